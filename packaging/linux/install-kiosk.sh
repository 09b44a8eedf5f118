#!/usr/bin/env bash
# Install the built tablet app (dist/appliance) as the tablet's kiosk: the app folder under
# /opt, an autostart entry and a systemd user unit for USER. Run as root from the repository.
#   sudo packaging/linux/install-kiosk.sh [USER]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
app="$here/../../dist/appliance"
user="${1:-${SUDO_USER:-$(id -un)}}"
home="$(getent passwd "$user" | cut -d: -f6)"
[ -x "$app/appliance" ] || { echo "error: $app/appliance missing: run 'make package' first" >&2; exit 2; }
[ -n "$home" ] || { echo "error: no such user: $user" >&2; exit 2; }
rm -rf /opt/annotation-appliance.new
cp -a "$app" /opt/annotation-appliance.new
rm -rf /opt/annotation-appliance.old
[ -d /opt/annotation-appliance ] && mv /opt/annotation-appliance /opt/annotation-appliance.old
mv /opt/annotation-appliance.new /opt/annotation-appliance
install -D -m 644 -o "$user" "$here/annotation-appliance.service" "$home/.config/systemd/user/annotation-appliance.service"
install -D -m 644 -o "$user" "$here/annotation-appliance.desktop" "$home/.config/autostart/annotation-appliance.desktop"
install -d -o "$user" "$home/Annotations"
echo "installed /opt/annotation-appliance for $user; it starts at the next login"
echo "(or now: systemctl --user enable --now annotation-appliance.service, as $user)"
