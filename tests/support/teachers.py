"""Teacher networks with random weights and batch-norm statistics: the published architectures
without their downloads, for tests of shapes, names and conversion."""

from __future__ import annotations

import torch

from edgesiam.train.teachers.aisfx import AiSfx
from edgesiam.train.teachers.campplus import CamPlusPlus


def randomised_campplus() -> CamPlusPlus:
    """A CAM++ with random weights *and* batch-norm statistics (He-initialised convolutions, so
    that activations keep their scale through the 60 layers), in evaluation mode."""
    torch.manual_seed(0)
    model = CamPlusPlus()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv1d | torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.01 * torch.randn(buffer.shape))
            elif name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape) + 0.5)
    return model.eval()


def randomised_aisfx() -> AiSfx:
    """An AI-SFX with random weights and running variances, in evaluation mode."""
    torch.manual_seed(0)
    model = AiSfx()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif tensor.is_floating_point():
                tensor.normal_(0.0, 0.2)
    return model.eval()
