#!/bin/sh
# Install, update or uninstall hems-rules on a Venus OS GX (v3.70+, Python 3.12).
#
#   install.sh [--root DIR]               install or update (idempotent; your rules are kept)
#   install.sh [--root DIR] --uninstall   remove the service and the app (rules are kept)
#   install.sh [--root DIR] --purge       remove everything, rules included
#
# Everything lives on /data, which survives firmware updates: the app in
# /data/hems-rules, logs in /data/log/hems-rules, and a hook in /data/rc.local that
# re-creates /service/hems-rules at every boot (/service is rebuilt in RAM at boot).
# --root installs into another tree (the tests use a temporary directory).
set -eu

ROOT=""
ACTION=install
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2%/}"; shift 2 ;;
        --uninstall) ACTION=uninstall; shift ;;
        --purge) ACTION=purge; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done

SRC=$(cd "$(dirname "$0")/.." && pwd)
APP=/data/hems-rules
RC=/data/rc.local
MARK_BEGIN="# >>> hems-rules >>>"
MARK_END="# <<< hems-rules <<<"

remove_hook() {
    [ -f "$ROOT$RC" ] || return 0
    sed "/^$MARK_BEGIN\$/,/^$MARK_END\$/d" "$ROOT$RC" > "$ROOT$RC.new"
    mv "$ROOT$RC.new" "$ROOT$RC"
    chmod 755 "$ROOT$RC"
}

stop_service() {
    if [ -z "$ROOT" ] && command -v svc >/dev/null 2>&1 && [ -e /service/hems-rules ]; then
        svc -d /service/hems-rules /service/hems-rules/log 2>/dev/null || true
    fi
    rm -f "$ROOT/service/hems-rules"
}

if [ "$ACTION" = install ] && [ "$SRC" = "$(cd "$ROOT$APP" 2>/dev/null && pwd)" ]; then
    echo "unpack the bundle somewhere else (e.g. /tmp) and run its install.sh from there" >&2
    exit 2
fi

if [ "$ACTION" != install ]; then
    stop_service
    remove_hook
    if [ "$ACTION" = purge ]; then
        rm -rf "${ROOT:?}$APP" "$ROOT/data/log/hems-rules"
    else
        find "$ROOT$APP" -mindepth 1 -maxdepth 1 ! -name rules -exec rm -rf {} + 2>/dev/null || true
    fi
    echo "hems-rules removed${ACTION#uninstall}"
    exit 0
fi

mkdir -p "$ROOT$APP" "$ROOT/data/log/hems-rules"
# Code and schema are replaced on every install; the user's rules never are.
rm -rf "$ROOT$APP/hems_rules" "$ROOT$APP/lib" "$ROOT$APP/schema" "$ROOT$APP/examples"
cp -R "$SRC/hems_rules" "$ROOT$APP/hems_rules"
for schema in rules scenario; do
    rm -f "$ROOT$APP/hems_rules/$schema.schema.json"
    cp "$SRC/schema/$schema.schema.json" "$ROOT$APP/hems_rules/$schema.schema.json"
done
find "$ROOT$APP/hems_rules" -name __pycache__ -type d -exec rm -rf {} + 2>/dev/null || true
[ -d "$SRC/lib" ] && cp -R "$SRC/lib" "$ROOT$APP/lib"
rm -rf "$ROOT$APP/pycache"
mkdir -p "$ROOT$APP/pycache"
# Byte code now, not at the first start on the GX (a few hundred ms there, every start
# if /data were read-only), as the service runs: -OO, under $APP/pycache (see below).
# Only on the GX itself: another Python would compile for itself.
if [ -z "$ROOT" ] && command -v python3 >/dev/null 2>&1; then
    PYTHONPYCACHEPREFIX=$APP/pycache python3 -OO -m compileall -q "$APP/hems_rules" "$APP/lib" \
        >/dev/null 2>&1 || true
fi
cp -R "$SRC/hems_rules/examples" "$ROOT$APP/examples"
[ -d "$ROOT$APP/rules" ] || cp -R "$SRC/hems_rules/examples" "$ROOT$APP/rules"

mkdir -p "$ROOT$APP/service/log"
cat > "$ROOT$APP/service/run" <<RUN
#!/bin/sh
exec 2>&1
[ -f /etc/profile.d/profile.sh ] && . /etc/profile.d/profile.sh
cd $APP
export PYTHONPATH=$APP/lib:$APP
# The byte code of -OO, also of the read-only rootfs's modules, which may ship none.
export PYTHONPYCACHEPREFIX=$APP/pycache
# Once per firmware (the rootfs's modules are new then), their byte code is made by a
# process of its own: the service would keep the compiler's memory until it restarts.
firmware=\$(cat /opt/victronenergy/version 2>/dev/null)
if [ -n "\$firmware" ] && [ "\$firmware" != "\$(cat pycache/firmware 2>/dev/null)" ]; then
    python3 -OO -c "import hems_rules.cli, hems_rules.app" &&
        cp /opt/victronenergy/version pycache/firmware
fi
# -OO: without docstrings (and asserts), 1.2-1.5 MiB less RAM; nothing run loads reads a
# docstring or needs an assert to hold. no_debug_ranges: byte code without the columns
# that traceback carets need, 0.2 MiB less. (bench_compare.py and soak.py run it so.)
exec softlimit -d 100000000 -s 1000000 -a 100000000 \\
    python3 -OO -X no_debug_ranges -u -m hems_rules.cli run --rules $APP/rules --log-dir /data/log/hems-rules
RUN
cat > "$ROOT$APP/service/log/run" <<'LOG'
#!/bin/sh
exec 2>&1
exec multilog t s25000 n4 /var/log/hems-rules
LOG
chmod 755 "$ROOT$APP/service/run" "$ROOT$APP/service/log/run"

remove_hook
[ -f "$ROOT$RC" ] || printf '#!/bin/sh\n' > "$ROOT$RC"
cat >> "$ROOT$RC" <<HOOK
$MARK_BEGIN
ln -sfn $APP/service /service/hems-rules
$MARK_END
HOOK
chmod 755 "$ROOT$RC"

mkdir -p "$ROOT/service"
ln -sfn "$APP/service" "$ROOT/service/hems-rules"
if [ -z "$ROOT" ] && command -v svc >/dev/null 2>&1; then
    svc -t /service/hems-rules 2>/dev/null || true  # an update restarts it
fi
echo "hems-rules installed in $ROOT$APP; check the rules with:"
echo "  PYTHONPATH=$APP/lib:$APP python3 -m hems_rules.cli check $APP/rules"
