#!/usr/bin/env bash
# Install the edgesiam device runtime as a service on a Raspberry Pi (or any Debian-like device).
#
#   sudo firmware_configs/install.sh [--profile NAME] [--extras LIST] [--bundles DIR] [WHEEL|DIR]
#
# WHEEL is a built edgesiam wheel (make dist); a folder is searched for the newest one; default:
# dist/ of the checkout this script sits in. What it does, each step only when needed (running it
# twice changes nothing and succeeds):
#   1. the service user 'edgesiam' (system user, no login, home /var/lib/edgesiam), a member of
#      'audio' (microphones) and, where they exist, 'dialout' (serial IMUs) and 'plugdev' (Coral USB);
#   2. a venv in /opt/edgesiam/venv with the wheel and its extras (default: device; the
#      microphone or serial extra is added when the profile's source needs it),
#      from binary wheels only (a Pi has no compiler to spare): a package without a wheel for
#      this CPU and Python is named by pip instead of being built;
#   3. the shipped bundles (export/ of this checkout, or --bundles DIR) in /opt/edgesiam/bundles/;
#   4. the profile firmware_configs/NAME.yaml (default pi4-audio) as /etc/edgesiam/runtime.yaml,
#      only when there is none yet (an edited config is never overwritten);
#   5. the systemd unit edgesiam.service in /etc/systemd/system/ (enabled and started by you, after
#      the next steps it prints).
# --root DIR installs under DIR instead of / (a staging tree for tests; the venv's scripts then
# name paths under DIR). Options pip reads from the environment (PIP_INDEX_URL, PIP_FIND_LINKS,
# ...) apply to step 2.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROFILE=pi4-audio
EXTRAS=device
BUNDLES=""
DEST=""
SOURCE=""
USER_NAME=edgesiam

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

say() { echo "  $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="${2:?--profile needs a name}"; shift 2 ;;
    --extras) EXTRAS="${2:?--extras needs a list}"; shift 2 ;;
    --bundles) BUNDLES="${2:?--bundles needs a folder}"; shift 2 ;;
    --root) DEST="${2:?--root needs a folder}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$SOURCE" ] || die "one wheel or folder only"; SOURCE="$1"; shift ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (sudo): it adds a user and writes /opt, /etc"
DEST="${DEST%/}"
VENV=/opt/edgesiam/venv
UNIT_SRC="$HERE/edgesiam.service"
PROFILE_SRC="$HERE/$PROFILE.yaml"
[ -f "$UNIT_SRC" ] || die "$UNIT_SRC is missing (run the script from its firmware_configs folder)"
[ -f "$PROFILE_SRC" ] || die "no profile $PROFILE_SRC (choose one of: $(cd "$HERE" && ls ./*.yaml | sed 's|^\./||; s|\.yaml$||' | tr '\n' ' '))"

# --- the wheel --------------------------------------------------------------------------------
SOURCE="${SOURCE:-$HERE/../dist}"
if [ -d "$SOURCE" ]; then
  WHEEL="$(ls -t "$SOURCE"/edgesiam-*.whl 2>/dev/null | head -n 1 || true)"
  [ -n "$WHEEL" ] || die "no edgesiam-*.whl in $SOURCE (build one with: make dist)"
else
  WHEEL="$SOURCE"
fi
[ -f "$WHEEL" ] || die "no wheel at $WHEEL"
case "$WHEEL" in *.whl) ;; *) die "$WHEEL is not a wheel (.whl)" ;; esac
WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
command -v python3 >/dev/null || die "python3 is missing (apt-get install python3 python3-venv)"

# what the wheel is, read with the standard library: its RECORD (a hash of every file) identifies
# the contents whatever the zip's timestamps; its METADATA lists the extras it offers
read -r WHEEL_ID WHEEL_EXTRAS < <(python3 - "$WHEEL" <<'PY'
import hashlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    meta = z.read(record.replace("RECORD", "METADATA")).decode()
    digest = hashlib.sha256(z.read(record)).hexdigest()[:16]
extras = [l.split(":", 1)[1].strip() for l in meta.splitlines() if l.startswith("Provides-Extra:")]
print(digest, ",".join(extras) or "-")
PY
) || die "$WHEEL is not a readable wheel"
offers() { case ",$WHEEL_EXTRAS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
add_extra() { # the first of the named extras the wheel offers
  local extra
  for extra in "$@"; do
    if offers "$extra"; then
      case ",$EXTRAS," in *",$extra,"*) ;; *) EXTRAS="$EXTRAS,$extra" ;; esac
      return 0
    fi
  done
}
source_type="$(sed -n '/^source:/,/^[^[:space:]]/s/^[[:space:]]*type:[[:space:]]*\([a-z]*\).*/\1/p' "$PROFILE_SRC" | head -n 1)"
case "$source_type" in
  mic) add_extra audio mic ;;
  serial) add_extra serial ;;
esac

echo "edgesiam install: $(basename "$WHEEL") [$EXTRAS], profile $PROFILE${DEST:+, under $DEST}"

# --- 1. the service user ------------------------------------------------------------------------
prefix=()
[ -n "$DEST" ] && prefix=(--prefix "$DEST")
has_group() { grep -q "^$1:" "$DEST/etc/group"; }
if grep -q "^$USER_NAME:" "$DEST/etc/passwd"; then
  say "user $USER_NAME: exists"
else
  useradd "${prefix[@]}" --system --user-group --home-dir /var/lib/edgesiam --no-create-home \
    --shell /usr/sbin/nologin --comment "edgesiam device runtime" "$USER_NAME"
  say "user $USER_NAME: created"
fi
for group in audio dialout plugdev; do
  if ! has_group "$group"; then
    [ "$group" = audio ] && die "no 'audio' group in $DEST/etc/group: the microphone could not be read"
    continue
  fi
  if id_groups="$(grep "^$group:" "$DEST/etc/group" | cut -d: -f4)" &&
    [[ ",$id_groups," == *",$USER_NAME,"* ]]; then
    say "group $group: $USER_NAME already a member"
  else
    usermod "${prefix[@]}" --append --groups "$group" "$USER_NAME"
    say "group $group: $USER_NAME added"
  fi
done

# the state folder exists before the first start, so that enrolling (next steps) can write to it;
# the unit's StateDirectory= keeps it owned by the service user
ids="$(grep "^$USER_NAME:" "$DEST/etc/passwd" | cut -d: -f3,4)"
if [ -d "$DEST/var/lib/edgesiam" ]; then
  say "state folder /var/lib/edgesiam: exists"
else
  install -d -m 0750 -o "${ids%%:*}" -g "${ids##*:}" "$DEST/var/lib/edgesiam"
  say "state folder /var/lib/edgesiam: created"
fi

# --- 2. the venv and the wheel ----------------------------------------------------------------
stamp="$DEST$VENV/.edgesiam-wheel"
want="$WHEEL_ID [$EXTRAS]"
if [ -x "$DEST$VENV/bin/edgesiam" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "venv $VENV: $(basename "$WHEEL") up to date"
else
  [ -x "$DEST$VENV/bin/python" ] || python3 -m venv "$DEST$VENV" ||
    die "python3 -m venv failed (apt-get install python3-venv)"
  "$DEST$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    --force-reinstall --no-deps "$WHEEL" ||
    die "pip could not install $WHEEL"
  "$DEST$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    "$WHEEL[$EXTRAS]" ||
    die "pip could not install the dependencies of [$EXTRAS] from binary wheels (see above: a package with no wheel for $(uname -m) and this Python)"
  echo "$want" >"$stamp"
  say "venv $VENV: $(basename "$WHEEL") [$EXTRAS] installed"
fi

# --- 3. bundles, 4. profile, 5. unit: files copied only when they differ -------------------------
place() { # SRC DST MODE: copy when missing or different; say which
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    return 1
  fi
  install -D -m "$3" "$1" "$2"
}
BUNDLES="${BUNDLES:-$HERE/../export}"
if [ -d "$BUNDLES" ]; then
  for manifest in "$BUNDLES"/*/manifest.json; do
    [ -f "$manifest" ] || continue
    bundle="$(dirname "$manifest")"
    name="$(basename "$bundle")"
    changed=0
    for f in "$bundle"/*; do
      [ -f "$f" ] || continue
      place "$f" "$DEST/opt/edgesiam/bundles/$name/$(basename "$f")" 0644 && changed=1
    done
    say "bundle $name: $([ $changed = 1 ] && echo "installed" || echo "up to date") in /opt/edgesiam/bundles/$name"
  done
else
  say "bundles: none found at $BUNDLES (copy one to /opt/edgesiam/bundles/NAME)"
fi
if [ -f "$DEST/etc/edgesiam/runtime.yaml" ]; then
  say "profile: /etc/edgesiam/runtime.yaml kept (exists)"
else
  install -D -m 0644 "$PROFILE_SRC" "$DEST/etc/edgesiam/runtime.yaml"
  say "profile: $PROFILE placed as /etc/edgesiam/runtime.yaml"
fi
if place "$UNIT_SRC" "$DEST/etc/systemd/system/edgesiam.service" 0644; then
  say "unit: /etc/systemd/system/edgesiam.service installed"
  if [ -z "$DEST" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
else
  say "unit: /etc/systemd/system/edgesiam.service up to date"
fi

cat <<EOF

Next steps:
  1. edit /etc/edgesiam/runtime.yaml: the broker's mqtt.url, the bundle (/opt/edgesiam/bundles/...)
     and the source; for MQTT with a password:
       install -m 0640 -o root -g $USER_NAME /dev/stdin /etc/edgesiam/mqtt-password   # type it, ^D
  2. enroll who or what to recognise (a few clips per label):
       sudo -u $USER_NAME $VENV/bin/edgesiam enroll --bundle /opt/edgesiam/bundles/speaker \\
           --gallery /var/lib/edgesiam/gallery.npz --label alice a1.wav a2.wav a3.wav
  3. check the config:  $VENV/bin/edgesiam validate /etc/edgesiam/runtime.yaml
  4. start it:          systemctl enable --now edgesiam && journalctl -u edgesiam -f
EOF
if grep -Eq '^[[:space:]]*type:[[:space:]]*mic' "$PROFILE_SRC" &&
  ! { ldconfig -p 2>/dev/null | grep -q libportaudio; }; then
  echo "  (the profile reads a microphone: apt-get install libportaudio2)"
fi
