#!/usr/bin/env bash
# Install the kiosk on Raspberry Pi OS (Bookworm) from this checkout, or bring an installed
# kiosk up to date. Safe to run again: every step checks first and changes only what differs.
#
#   sudo systemd/install.sh             install or update
#   systemd/install.sh --dry-run        print what it would do, change nothing (any user)
#   sudo systemd/install.sh --no-apt    skip the Debian packages (already installed)
#
# What it sets up:
#   users kiosk (groups dialout, gpio) and kiosk-screen (video, render, input)
#   /opt/kiosk          a copy of the checkout, with /opt/kiosk/.venv installed from it
#   /etc/kiosk/kiosk.toml   a production configuration, written only if absent
#   /etc/systemd/system     kiosk, kiosk-browser, kiosk-backup units (enabled)
#   /etc/udev/rules.d/99-kiosk-serial.rules   /dev/kiosk-card, /dev/kiosk-fingerprint
#   /etc/pam.d/kiosk-browser   the touchscreen's logind session
#   consoleblank=0 on the kernel command line
set -euo pipefail

PREFIX=/opt/kiosk
CONFIG_DIR=/etc/kiosk
UNIT_DIR=/etc/systemd/system
UDEV_DIR=/etc/udev/rules.d
PAM_FILE=/etc/pam.d/kiosk-browser
UNITS=(kiosk.service kiosk-browser.service kiosk-backup.service kiosk-backup.timer)
APT_PACKAGES=(python3 python3-venv python3-lgpio rsync cage chromium)

DRY_RUN=0
APT=1
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        --no-apt) APT=0 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ! -f "$SOURCE/pyproject.toml" || ! -f "$SOURCE/systemd/kiosk.service" ]]; then
    echo "install.sh: $SOURCE is not a kiosk checkout" >&2
    exit 1
fi
if [[ $DRY_RUN -eq 0 && $(id -u) -ne 0 ]]; then
    echo "install.sh: run as root (sudo $0), or with --dry-run to see what it would do" >&2
    exit 1
fi

# Print a step; run it unless this is a dry run.
run() {
    echo "+ $*"
    if [[ $DRY_RUN -eq 0 ]]; then
        "$@"
    fi
}

# Install a file from the checkout with the given mode, if it is missing or differs.
install_file() {
    local mode=$1 source=$2 target=$3
    if [[ -f "$target" ]] && cmp -s "$source" "$target"; then
        echo "= $target is up to date"
    else
        run install -D -m "$mode" -o root -g root "$source" "$target"
    fi
}

# Write stdin to a file unless the file exists (a technician's edits are never overwritten).
write_if_absent() {
    local mode=$1 target=$2 content
    content=$(cat)
    if [[ -e "$target" ]]; then
        echo "= $target exists, left as it is"
    else
        echo "+ write $target (mode $mode)"
        if [[ $DRY_RUN -eq 0 ]]; then
            install -d -m 0755 "$(dirname "$target")"
            printf '%s\n' "$content" > "$target"
            chmod "$mode" "$target"
        fi
    fi
}

ensure_group() {
    if getent group "$1" >/dev/null; then
        echo "= group $1 exists"
    else
        run groupadd --system "$1"
    fi
}

# ensure_user NAME HOME GROUP...: a system user without a login shell in the given groups.
ensure_user() {
    local name=$1 home=$2
    shift 2
    local groups
    groups=$(IFS=,; echo "$*")
    if id -u "$name" >/dev/null 2>&1; then
        echo "= user $name exists"
        run usermod --append --groups "$groups" "$name"
    else
        run useradd --system --user-group --home-dir "$home" --no-create-home \
            --shell /usr/sbin/nologin --groups "$groups" "$name"
    fi
}

echo "== Debian packages"
if [[ $APT -eq 1 ]]; then
    missing=()
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$package")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        echo "= ${APT_PACKAGES[*]} installed"
    else
        run apt-get update -qq
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
else
    echo "= skipped (--no-apt)"
fi

echo "== Users and groups"
for group in dialout gpio video render input; do
    ensure_group "$group"
done
ensure_user kiosk /var/lib/kiosk dialout gpio
ensure_user kiosk-screen /var/lib/kiosk-screen video render input
if [[ -d /var/lib/kiosk-screen ]]; then
    echo "= /var/lib/kiosk-screen exists"
else
    # Chromium keeps its (incognito) profile scaffolding in the screen user's home.
    run install -d -m 0700 -o kiosk-screen -g kiosk-screen /var/lib/kiosk-screen
fi

echo "== The kiosk in $PREFIX"
# The application is owned by root and read-only to the service; the database lives in
# /var/lib/kiosk (StateDirectory=), which systemd creates for the kiosk user.
run rsync -a --delete --exclude=.git --exclude=.venv --exclude=var --exclude=test-output \
    --exclude=__pycache__ --exclude='.*_cache' "$SOURCE/" "$PREFIX/"
if [[ -x "$PREFIX/.venv/bin/python" ]]; then
    echo "= $PREFIX/.venv exists"
else
    # The system site packages give gpiozero Debian's lgpio (python3-lgpio) for /dev/gpiochip*.
    run python3 -m venv --system-site-packages "$PREFIX/.venv"
fi
run "$PREFIX/.venv/bin/python" -m pip install --quiet --upgrade pip
run "$PREFIX/.venv/bin/python" -m pip install --quiet "$PREFIX"
# The version does not change with every commit: reinstall the kiosk itself every time.
run "$PREFIX/.venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "$PREFIX"
# ProtectSystem=strict: the service cannot write bytecode, so compile it now.
run "$PREFIX/.venv/bin/python" -m compileall -q "$PREFIX/.venv/lib"

echo "== Configuration in $CONFIG_DIR"
run install -d -m 0755 -o root -g root "$CONFIG_DIR"
write_if_absent 0644 "$CONFIG_DIR/kiosk.toml" <<'TOML'
# The kiosk's configuration (see /opt/kiosk/README.md, "Configuration"). kiosk.service also
# sets KIOSK_ENVIRONMENT=production, KIOSK_DATABASE and KIOSK_STATE_DIR, which win over this file.
environment = "production"
database = "/var/lib/kiosk/kiosk.db"

# The mechanism's wiring: copy /etc/kiosk/slots.toml.example to /etc/kiosk/slots.toml and
# describe this machine's motors, home switches and drop beam. The kiosk does not start without it.
vending = "gpio-spiral://?layout=/etc/kiosk/slots.toml"
# The Qibixx MDB-USB interface, named by /etc/udev/rules.d/99-kiosk-serial.rules
# (the MDB Pi HAT instead: "qibixx:///dev/serial0").
card = "qibixx:///dev/kiosk-card"
# The fingerprint module on a USB-serial adapter, named by the same rules
# (on the Pi's UART instead, with the serial console disabled: "r30x:///dev/serial0?baud=57600").
fingerprint = "r30x:///dev/kiosk-fingerprint?baud=57600"

# Technicians reach the maintenance page from this network; the kiosk must then listen on it.
# host = "0.0.0.0"
# technician_networks = ["192.168.1.0/24"]
currency = "EUR"
TOML
if [[ -e "$CONFIG_DIR/slots.toml.example" ]]; then
    echo "= $CONFIG_DIR/slots.toml.example exists"
else
    echo "+ write $CONFIG_DIR/slots.toml.example (the demo layout, annotated)"
    if [[ $DRY_RUN -eq 0 ]]; then
        (cd "$PREFIX" && "$PREFIX/.venv/bin/python" -c \
            'from drivers.vending.layout import DEFAULT_LAYOUT_TOML as t; print(t, end="")') \
            > "$CONFIG_DIR/slots.toml.example"
    fi
fi

echo "== udev rules"
install_file 0644 "$SOURCE/systemd/99-kiosk-serial.rules" "$UDEV_DIR/99-kiosk-serial.rules"
run udevadm control --reload
run udevadm trigger --subsystem-match=tty --action=add

echo "== The touchscreen's login session"
write_if_absent 0644 "$PAM_FILE" <<'PAM'
# kiosk-browser.service: a logind session on tty1 for the kiosk-screen user, no password.
# systemd only opens the session; nobody authenticates through this service.
auth     required pam_deny.so
account  include  common-account
session  include  common-session
PAM
CMDLINE=/boot/firmware/cmdline.txt
[[ -f $CMDLINE ]] || CMDLINE=/boot/cmdline.txt
if [[ ! -f $CMDLINE ]]; then
    echo "= no $CMDLINE (not a Raspberry Pi?): add consoleblank=0 to the kernel command line"
elif grep -qw 'consoleblank=0' "$CMDLINE"; then
    echo "= $CMDLINE has consoleblank=0"
else
    # Takes effect at the next boot: the console under the browser never blanks.
    run sed -i '1 s/$/ consoleblank=0/' "$CMDLINE"
fi

echo "== systemd units"
for unit in "${UNITS[@]}"; do
    install_file 0644 "$SOURCE/systemd/$unit" "$UNIT_DIR/$unit"
done
run systemctl daemon-reload
run systemctl disable getty@tty1.service
run systemctl enable kiosk.service kiosk-browser.service kiosk-backup.timer

echo "== Done"
if [[ ! -e "$CONFIG_DIR/slots.toml" ]]; then
    echo "Next: write $CONFIG_DIR/slots.toml (see slots.toml.example), then"
fi
echo "  sudo -u kiosk env KIOSK_CONFIG=$CONFIG_DIR/kiosk.toml KIOSK_DATABASE=/var/lib/kiosk/kiosk.db \\"
echo "       $PREFIX/.venv/bin/kiosk technician add NAME     # once the kiosk has started"
echo "  sudo systemctl restart kiosk    # or reboot; journalctl -u kiosk -f to watch it"
