# Settings and helpers shared by the lab scripts (sourced, never run).
# shellcheck shell=bash
# shellcheck disable=SC2034 # the settings are used by the scripts that source this

# Where the lab keeps its data, keys, logs and lab.env.
LAB=${MAB_LAB_DIR:-/var/lib/mab-lab}

# Debian's own docker CLI (20.10, BuildKit built in); the one on PATH may lack buildx.
LAB_DOCKER_CLI=/usr/bin/docker
LAB_DOCKERD=/usr/sbin/dockerd
LAB_SSHD=/usr/sbin/sshd

# "This machine's engine": the default socket.
LAB_LOCAL_SOCKET=/var/run/docker.sock
LAB_LOCAL_PIDFILE=/var/run/docker.pid

# Registries: an open one and one that wants a password.
LAB_REGISTRY_PORT=5000
LAB_AUTH_REGISTRY_PORT=5001
LAB_AUTH_USER=mab
LAB_AUTH_PASSWORD=mab-secret

# A third registry that wants a token from the lab's token service
# (tests/lab/token-server), which takes the user above by Basic auth, and the
# identity (refresh) token below with the refresh-token grant.
LAB_TOKEN_REGISTRY_PORT=5002
LAB_TOKEN_SERVER_PORT=5003
LAB_TOKEN_SERVICE=mab-lab-registry
LAB_TOKEN_ISSUER=mab-lab-token-server
LAB_REFRESH_TOKEN=mab-refresh-7f3c9e

# Every runner host runs sshd on this port of its own loopback address, and its
# engine socket lives in a directory that only its own mount namespace sees.
LAB_SSH_PORT=2222
LAB_HOST_RUN_DIR=/run/mab-host
LAB_HOST_SOCKET=$LAB_HOST_RUN_DIR/docker.sock

# The simulated runner hosts reachable directly: name, loopback address,
# bridge, bridge address, and optionally the engine (native, the default;
# arm64: Debian's arm64 dockerd under QEMU user emulation, see LAB_ARM_*; or
# podman: Podman's API service, see LAB_PODMAN_*, whose bridge is made by
# netavark, not by `up`).
# Add a line here to add a host; `up` starts it (start_host NAME ADDR BRIDGE
# BRIDGE_ADDRESS), `down` stops it, lab.env lists it in HOSTS. A host whose
# engine is another binary sets LAB_HOST_DOCKERD and that engine's environment
# around its start_host call (see start_runner in `up`, and host-main).
LAB_HOSTS=(
    "runner-a 127.0.0.2 mab-br-a 172.30.1.1/24"
    "runner-b 127.0.0.3 mab-br-b 172.30.2.1/24"
    "runner-arm 127.0.0.4 mab-br-arm 172.30.3.1/24 arm64"
    "runner-podman 127.0.0.5 mab-br-pod 172.30.6.1/24 podman"
)

# The Podman host (engine `podman` in LAB_HOSTS): Debian's podman running
# `podman system service` inside the host's mount namespace, which has a
# tmpfs of its own over /run. So its socket, /run/podman/podman.sock, exists
# only there, and this machine's /run/docker.sock (= /var/run/docker.sock),
# /run/containers, /run/runc and /run/netns are not seen there: a runner
# without `engine` set finds only Podman's socket on that host. Its storage
# is $LAB/NAME/storage, its runroot and libpod tmp dir are under the private
# /run/podman, its network config dir is $LAB/NAME/networks (one network,
# LAB_PODMAN_NETWORK, on the host's bridge and subnet from LAB_HOSTS, the
# default for builds), its containers.conf is $LAB/NAME/containers.conf
# (CONTAINERS_CONF), and /var/lib/containers (the blob info cache) is a
# directory of its own, $LAB/NAME/var-lib-containers, bind-mounted there.
LAB_PODMAN=/usr/bin/podman
LAB_PODMAN_RUN_DIR=/run/podman
LAB_PODMAN_SOCKET=$LAB_PODMAN_RUN_DIR/podman.sock
LAB_PODMAN_NETWORK=mab-podman

# How long `up` waits for a native engine to answer.
LAB_HOST_START_SECONDS=60

# The arm64 engine: Debian's arm64 packages unpacked (dpkg -x) into one
# private root, whose usr/sbin/dockerd runs under QEMU with QEMU_LD_PREFIX set
# to that root. These are dockerd's shared libraries and their own (`up`
# checks that every DT_NEEDED entry resolves inside the root).
LAB_ARM_ROOT=$LAB/arm-root
LAB_ARM_PACKAGES=(
    docker.io libsystemd0 libdevmapper1.02.1 liblzma5 libzstd1 liblz4-1 libcap2
    libgcrypt20 libgpg-error0 libselinux1 libudev1 libpcre2-8-0 libseccomp2 libc6
)
# containerd, runc, docker-init and docker-proxy come from the host (amd64):
# the arm64 runc fails under QEMU. So the arm root is NOT on this PATH.
LAB_ARM_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# An emulated dockerd starts slowly; `up` waits this long, with progress lines.
LAB_ARM_START_SECONDS=900

# A runner host reachable only through a jump host. Two network namespaces:
#
#   root  mab-jump0 10.212.0.1/30 <-veth-> mab-jump1 10.212.0.2/30  [mab-jump]
#   [mab-jump] mab-hid0 10.213.0.1/30 <-veth-> mab-hid1 10.213.0.2/30  [mab-hidden]
#
# mab-jump does not forward (ip_forward 0) and the root namespace has an
# `unreachable` route for 10.213.0.0/30 (so that nothing for it leaves by the
# default route either): the hidden host is reached only by SSH to the jump
# host and a direct-tcpip channel from there (ProxyJump).
LAB_JUMP_NAME=jump
LAB_JUMP_NETNS=mab-jump
LAB_JUMP_ADDR=10.212.0.2
LAB_JUMP_ROOT_VETH=mab-jump0
LAB_JUMP_ROOT_VETH_ADDRESS=10.212.0.1/30
LAB_JUMP_VETH=mab-jump1
LAB_JUMP_VETH_ADDRESS=10.212.0.2/30
# sshd logs the direct-tcpip channels it opens at DEBUG1 only (VERBOSE logs
# the logins but not the channels).
LAB_JUMP_LOG_LEVEL=DEBUG1
LAB_HIDDEN_NAME=runner-hidden
LAB_HIDDEN_NETNS=mab-hidden
LAB_HIDDEN_ADDR=10.213.0.2
LAB_HIDDEN_NET=10.213.0.0/30
LAB_HIDDEN_JUMP_VETH=mab-hid0
LAB_HIDDEN_JUMP_VETH_ADDRESS=10.213.0.1/30
LAB_HIDDEN_VETH=mab-hid1
LAB_HIDDEN_VETH_ADDRESS=10.213.0.2/30
LAB_HIDDEN_BRIDGE=mab-br-hid
LAB_HIDDEN_BRIDGE_ADDRESS=172.30.5.1/24

# QEMU handlers the lab registers (names as in /usr/lib/binfmt.d/qemu-NAME.conf);
# each runner host lists exactly these (tests/lab/host-main).
LAB_QEMU_HANDLERS=(aarch64 ppc64le s390x arm)
# Handlers registered machine-wide only, for this machine's engine (the
# ten-platform build of tests/bench/build); no runner host lists them, so the
# tests of a platform without its handler still find none there.
LAB_LOCAL_QEMU_HANDLERS=(mips64el mipsel)

# Static busybox binaries: file name in $LAB/busybox -> Debian architecture.
# amd64, arm64, ppc64le and s390x are for the tests; 386, armv5 (Debian's
# armel, ARMv5TE: it also serves arm/v6), armv7, mips64le and mipsle for the
# ten-platform build of tests/bench/build.
declare -A LAB_BUSYBOX_DEB_ARCH=([amd64]=amd64 [arm64]=arm64 [ppc64le]=ppc64el [s390x]=s390x
    [386]=i386 [armv5]=armel [armv7]=armhf [mips64le]=mips64el [mipsle]=mipsel)
# What `busybox uname -m` prints for each of them (under QEMU: the emulated CPU's).
declare -A LAB_BUSYBOX_UNAME=([amd64]=x86_64 [arm64]=aarch64 [ppc64le]=ppc64le [s390x]=s390x
    [386]=x86_64 [armv5]=armv7l [armv7]=armv7l [mips64le]=mips64 [mipsle]=mips)

log() {
    printf 'lab: %s\n' "$*" >&2
}

# die MESSAGE [HINT]
die() {
    printf 'lab: error: %s\n' "$1" >&2
    if [[ $# -gt 1 ]]; then
        printf 'hint: %s\n' "$2" >&2
    fi
    exit 1
}

require_root() {
    [[ $(id -u) -eq 0 ]] || die "the lab scripts start engines and daemons and must run as root" \
        "run them with sudo, or as root"
}

# Take the lab's lock so that two scripts never change the lab at once.
# Daemons must be started with `9>&-` so that they do not inherit it.
lab_lock() {
    mkdir -p "$LAB"
    exec 9>"$LAB/.lock"
    if ! flock -w 300 9; then
        die "another lab script has held $LAB/.lock for 5 minutes" \
            "check for a hung tests/lab/up or tests/lab/down"
    fi
}

# host_env_prefix NAME: the prefix of a host's lines in lab.env,
# runner-a -> RUNNER_A, arm-box -> RUNNER_ARM_BOX.
host_env_prefix() {
    local upper=${1#runner-}
    upper=${upper^^}
    printf 'RUNNER_%s' "${upper//-/_}"
}

# load_lab_env: set a shell variable for every KEY=VALUE line of lab.env.
# (`. lab.env` does not do for HOSTS, whose value holds a space.)
load_lab_env() {
    local key value
    [[ -r $LAB/lab.env ]] || die "the lab is not up ($LAB/lab.env is missing)" "run tests/lab/up"
    while IFS='=' read -r key value; do
        if [[ $key =~ ^[A-Z][A-Z0-9_]*$ ]]; then
            printf -v "$key" '%s' "$value"
        fi
    done <"$LAB/lab.env"
}

# pid_matches PID PATTERN: the process lives and its command line contains
# PATTERN (a recycled PID or a zombie does not match).
pid_matches() {
    local pid=$1 pattern=$2 cmdline
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ -n $cmdline && $cmdline == *"$pattern"* ]]
}

# read_pid FILE: the number in FILE, or nothing.
read_pid() {
    local pid=""
    if [[ -r $1 ]]; then
        read -r pid <"$1" || true
    fi
    printf '%s' "$pid"
}

# wait_for SECONDS WHAT COMMAND...: poll COMMAND until it succeeds.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "gave up after ${seconds}s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}

# wait_with_progress SECONDS WHAT COMMAND...: like wait_for, for something
# slow: a progress line every 15 s, and how long it took at the end.
wait_with_progress() {
    local seconds=$1 what=$2
    shift 2
    local started=$SECONDS next=$((SECONDS + 15))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS - started >= seconds)); then
            log "gave up after ${seconds}s waiting for $what"
            return 1
        fi
        if ((SECONDS >= next)); then
            log "still waiting for $what ($((SECONDS - started))s so far, at most ${seconds}s)"
            next=$((SECONDS + 15))
        fi
        sleep 0.5
    done
    if ((SECONDS - started >= 2)); then
        log "$what: ready after $((SECONDS - started))s"
    fi
}

# stop_pid PID PATTERN SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL.
stop_pid() {
    local pid=$1 pattern=$2 seconds=$3
    pid_matches "$pid" "$pattern" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for "$seconds" "process $pid to stop" not pid_matches "$pid" "$pattern"; then
        log "process $pid ignored SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 5 "process $pid to die" not pid_matches "$pid" "$pattern" || true
    fi
}

not() {
    ! "$@"
}

# http_code URL: the HTTP status a GET answers with, 000 when nothing answers.
http_code() {
    curl -s -o /dev/null -m 3 -w '%{http_code}' "$1" 2>/dev/null || true
}

# in_netns NETNS COMMAND...: run COMMAND in the named network namespace
# (/run/netns/NETNS), or where we are when NETNS is empty.
in_netns() {
    local netns=$1
    shift
    if [[ -n $netns ]]; then
        nsenter "--net=/run/netns/$netns" "$@"
    else
        "$@"
    fi
}

# netns_exists NETNS: `ip netns add` made it (in this boot: /run is a tmpfs).
netns_exists() {
    [[ -e /run/netns/$1 ]] && ip netns list | grep -q "^$1\b"
}

# pid_in_netns PID NETNS: the process lives in that named network namespace
# (not in an older one of the same name that something still holds).
pid_in_netns() {
    local want have
    want=$(stat -L -c 'net:[%i]' "/run/netns/$2" 2>/dev/null) || return 1
    have=$(readlink "/proc/$1/ns/net" 2>/dev/null) || return 1
    [[ $want == "$have" ]]
}

# tcp_answers ADDR PORT [NETNS]: something accepts connections there.
tcp_answers() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    in_netns "${3:-}" timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# sshd_answers ADDR PORT [NETNS]: an SSH server greets there.
sshd_answers() {
    local banner
    # shellcheck disable=SC2016 # expanded by the inner bash
    banner=$(in_netns "${3:-}" timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"; head -c 8 <&3' _ "$1" "$2" 2>/dev/null) ||
        return 1
    [[ $banner == SSH-2.0- ]]
}

# The mount namespace of a host is recorded with the boot it belongs to, so a
# record left over from before a reboot is never mistaken for a live one.
boot_id() {
    cat /proc/sys/kernel/random/boot_id
}

# host_namespace NAME: the mount namespace (mnt:[N]) recorded for a host in
# this boot, or nothing.
host_namespace() {
    local file=$LAB/$1/mntns ns boot
    [[ -r $file ]] || return 0
    read -r ns boot <"$file" || return 0
    if [[ $boot == "$(boot_id)" && $ns != "$(readlink /proc/self/ns/mnt)" ]]; then
        printf '%s' "$ns"
    fi
}

# namespace_pids NS: processes living in mount namespace NS.
namespace_pids() {
    local ns=$1 entry pid
    [[ -n $ns ]] || return 0
    for entry in /proc/[0-9]*; do
        pid=${entry#/proc/}
        if [[ $(readlink "$entry/ns/mnt" 2>/dev/null) == "$ns" ]]; then
            printf '%s\n' "$pid"
        fi
    done
}

namespace_empty() {
    [[ -z $(namespace_pids "$1") ]]
}

# host_holder NAME: PID of the process holding the host's namespace, if alive.
host_holder() {
    local pid
    pid=$(read_pid "$LAB/$1/holder.pid")
    if pid_matches "$pid" "host-main $1 "; then
        printf '%s' "$pid"
    fi
}

# host_running NAME: the host's namespace holder lives.
host_running() {
    [[ -n $(host_holder "$1") ]]
}

# write_sshd_config NAME ADDR [LOG_LEVEL] [PORT] [MAX_STARTUPS]: the sshd
# config of a host in $LAB/NAME. The lab's hosts use the defaults: VERBOSE,
# port $LAB_SSH_PORT, and MaxStartups 100:30:200 (tests run at once and each
# opens several connections); a spare host (tests/lab/spare-host) has a port
# of its own and may set a low MaxStartups to throttle logins. Each host's
# sessions get a runtime directory of their own, $LAB/NAME/run, as
# XDG_RUNTIME_DIR (a real host's login gets /run/user/UID): the simulated
# hosts share this machine's /tmp, and mab keeps its runner slots under
# ${XDG_RUNTIME_DIR:-/tmp} (docs/runners.md), which must be one per host.
write_sshd_config() {
    local name=$1 addr=$2 log_level=${3:-VERBOSE} port=${4:-$LAB_SSH_PORT} max_startups=${5:-100:30:200}
    local dir=$LAB/$1
    install -d -m 700 "$dir/run"
    cat >"$dir/sshd_config" <<EOF
# sshd of the simulated runner host $name, written by the lab scripts.
ListenAddress $addr
Port $port
HostKey $dir/ssh_host_ed25519_key
AuthorizedKeysFile $dir/authorized_keys
PidFile $dir/sshd.pid
StrictModes no
LogLevel $log_level
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
MaxStartups $max_startups
MaxSessions 100
SetEnv XDG_RUNTIME_DIR=$dir/run
EOF
}

# host_engine NAME: the engine of a host of LAB_HOSTS (native, arm64 or
# podman); native for any other host (runner-hidden, spare hosts).
host_engine() {
    local line name engine
    for line in "${LAB_HOSTS[@]}"; do
        read -r name _ _ _ engine <<<"$line"
        if [[ $name == "$1" ]]; then
            printf '%s' "${engine:-native}"
            return
        fi
    done
    printf native
}

# host_socket NAME: the path of the host's engine socket, inside its namespace.
host_socket() {
    if [[ $(host_engine "$1") == podman ]]; then
        printf '%s' "$LAB_PODMAN_SOCKET"
    else
        printf '%s' "$LAB_HOST_SOCKET"
    fi
}

# podman_version_answers PID: Podman's service answers GET /version inside
# the namespace of PID, naming its "Podman Engine" component.
podman_version_answers() {
    local answer
    answer=$(timeout 10 nsenter -t "$1" -m curl -s -m 8 --unix-socket "$LAB_PODMAN_SOCKET" http://d/version) ||
        return 1
    [[ $answer == *'"Podman Engine"'* ]]
}

# host_engine_answers NAME PID: the host's engine answers inside its namespace.
host_engine_answers() {
    if [[ $(host_engine "$1") == podman ]]; then
        podman_version_answers "$2"
        return
    fi
    timeout 10 nsenter -t "$2" -m "$LAB_DOCKER_CLI" -H "unix://$LAB_HOST_SOCKET" \
        version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# live_pid PIDFILE PATTERN: the PID in PIDFILE, if that process lives and its
# command line contains PATTERN.
live_pid() {
    local pid
    pid=$(read_pid "$1")
    if pid_matches "$pid" "$2"; then
        printf '%s' "$pid"
    fi
}

# host_sshd_pid NAME: PID of the host's (or the jump host's) sshd listener, if alive.
host_sshd_pid() {
    live_pid "$LAB/$1/sshd.pid" "$LAB/$1/sshd_config"
}

# jump_sshd_pid: PID of the jump host's sshd listener, if alive.
jump_sshd_pid() {
    host_sshd_pid "$LAB_JUMP_NAME"
}

# local_engine_pid: PID of the local dockerd the lab started, if alive.
local_engine_pid() {
    live_pid "$LAB_LOCAL_PIDFILE" "--data-root $LAB/local/docker"
}

# registry_pid NAME: PID of a lab registry (registry, registry-auth or
# registry-token), if alive.
registry_pid() {
    live_pid "$LAB/$1/registry.pid" "serve $LAB/$1/config.yml"
}

# token_server_pid: PID of the lab's token service, if alive.
token_server_pid() {
    live_pid "$LAB/token-server/token-server.pid" "token-server 127.0.0.1 $LAB_TOKEN_SERVER_PORT"
}

# stop_host NAME: stop the host's namespace holder and anything left in its
# namespace (a restarted sshd, an engine whose holder was killed).
stop_host() {
    local name=$1 dir=$LAB/$1 holder ns pid
    holder=$(host_holder "$name")
    if [[ -n $holder ]]; then
        log "$name: stopping (namespace holder $holder)"
        stop_pid "$holder" "host-main $name " 60
    fi
    ns=$(host_namespace "$name")
    for pid in $(namespace_pids "$ns"); do
        log "$name: stopping leftover process $pid ($(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-60))"
        kill -TERM "$pid" 2>/dev/null || true
    done
    if [[ -n $ns ]] && ! wait_for 30 "the processes of $name to stop" namespace_empty "$ns"; then
        for pid in $(namespace_pids "$ns"); do
            kill -KILL "$pid" 2>/dev/null || true
        done
    fi
    pid=$(host_sshd_pid "$name")
    if [[ -n $pid ]]; then
        stop_pid "$pid" "$dir/sshd_config" 10
    fi
    rm -f "$dir/holder.pid" "$dir/mntns"
}

netns_unused() {
    [[ -z $(ip netns pids "$1" 2>/dev/null) ]]
}

# stop_jump_network: stop the jump host's sshd and anything else left in the
# two namespaces (e.g. an SSH session it forked), remove the veths, the
# namespaces and the root namespace's unreachable route. The hidden host
# must be stopped first (stop_host).
stop_jump_network() {
    local pid netns
    pid=$(jump_sshd_pid)
    if [[ -n $pid ]]; then
        log "$LAB_JUMP_NAME: stopping sshd $pid"
        stop_pid "$pid" "$LAB/$LAB_JUMP_NAME/sshd_config" 10
    fi
    rm -f "$LAB/$LAB_JUMP_NAME/sshd.pid"
    for netns in "$LAB_HIDDEN_NETNS" "$LAB_JUMP_NETNS"; do
        netns_exists "$netns" || continue
        for pid in $(ip netns pids "$netns" 2>/dev/null); do
            log "network: stopping leftover process $pid in $netns ($(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-60))"
            kill -TERM "$pid" 2>/dev/null || true
        done
    done
    if ip link show "$LAB_JUMP_ROOT_VETH" >/dev/null 2>&1; then
        log "network: removing veth $LAB_JUMP_ROOT_VETH"
        ip link del "$LAB_JUMP_ROOT_VETH"
    fi
    for netns in "$LAB_HIDDEN_NETNS" "$LAB_JUMP_NETNS"; do
        if netns_exists "$netns"; then
            if ! wait_for 10 "the processes in $netns to stop" netns_unused "$netns"; then
                for pid in $(ip netns pids "$netns" 2>/dev/null); do
                    kill -KILL "$pid" 2>/dev/null || true
                done
            fi
            log "network: removing namespace $netns"
            ip netns del "$netns"
        fi
    done
    if [[ -n $(ip route show type unreachable "$LAB_HIDDEN_NET" 2>/dev/null) ]]; then
        log "network: removing the unreachable route to $LAB_HIDDEN_NET"
        ip route del unreachable "$LAB_HIDDEN_NET"
    fi
}

# ip_in NETNS ARGS...: `ip` in that network namespace, or in ours when empty.
ip_in() {
    local netns=$1
    shift
    ip ${netns:+-n "$netns"} "$@"
}

# ensure_address NETNS DEVICE ADDRESS: DEVICE has ADDRESS and is up.
ensure_address() {
    local netns=$1 device=$2 address=$3 addresses
    addresses=$(ip_in "$netns" -o addr show dev "$device")
    if [[ " $addresses " != *" $address "* ]]; then
        ip_in "$netns" addr add "$address" dev "$device"
    fi
    ip_in "$netns" link set "$device" up
}

# ensure_bridge NAME ADDRESS [NETNS]: a bridge with that address, up.
ensure_bridge() {
    local bridge=$1 address=$2 netns=${3:-}
    if ! ip_in "$netns" link show "$bridge" >/dev/null 2>&1; then
        log "network: creating bridge $bridge ($address${netns:+ in $netns})"
        ip_in "$netns" link add "$bridge" type bridge
    fi
    ensure_address "$netns" "$bridge" "$address"
}
