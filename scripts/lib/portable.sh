# Sourced by the scripts: the few GNU coreutils/util-linux tools they use, with a fallback where a host
# lacks them (stock macOS has no timeout, flock or sha256sum). On Linux each is the GNU tool, unchanged.
#   with_timeout [--kill-after=SECONDS] SECONDS COMMAND [ARG...]  COMMAND, stopped (SIGTERM) after SECONDS:
#       its exit status, or 124 when it ran out of time, as GNU timeout; the fallback is perl (stock on
#       macOS), and without perl the command runs unbounded: the limit only guards against a hang.
#   lab_lock FILE / lab_unlock FILE  one holder at a time: flock on FILE, else an atomic mkdir of FILE.d
#       that a dead holder's successor takes over; waits at most LAB_LOCK_WAIT_S (default 900) seconds.
#   lab_sha256  stdin's SHA-256 in hex: sha256sum, else shasum -a 256 (perl's, on macOS).

with_timeout() {
    local kill_after=
    case "${1-}" in --kill-after=*) kill_after=$1; shift ;; esac
    if command -v timeout >/dev/null 2>&1; then
        timeout ${kill_after:+"$kill_after"} "$@"
    elif command -v perl >/dev/null 2>&1; then
        perl -e '
            my ($seconds, $kill, @command) = @ARGV;
            my $pid = fork() // die "with_timeout: fork: $!\n";
            if ($pid == 0) { exec { $command[0] } @command; warn "with_timeout: $command[0]: $!\n"; exit($!{ENOENT} ? 127 : 126) }
            $SIG{ALRM} = sub {
                kill "TERM", $pid;
                if ($kill) { $SIG{ALRM} = sub { kill "KILL", $pid }; alarm $kill }
                waitpid $pid, 0;
                exit 124;
            };
            alarm $seconds;
            waitpid $pid, 0;
            exit($? & 127 ? 128 + ($? & 127) : $? >> 8);
        ' "$1" "${kill_after#--kill-after=}" "${@:2}"
    else
        "${@:2}"
    fi
}

lab_lock() {
    local file=$1 waited=0 holder
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$file"
        flock 9
        return
    fi
    until mkdir "$file.d" 2>/dev/null; do
        holder=$(cat "$file.d/pid" 2>/dev/null || true)
        if [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; then
            rm -rf "$file.d"  # its holder ended without unlocking (killed): the lock is free
            continue
        fi
        if [ "$waited" -ge "${LAB_LOCK_WAIT_S:-900}" ]; then
            echo "waited ${waited}s for $file.d (held by pid ${holder:-unknown}); remove it if no install runs" >&2
            return 2
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo $$ >"$file.d/pid"
}

lab_unlock() {
    if command -v flock >/dev/null 2>&1; then
        flock -u 9
    else
        rm -rf "$1.d"
    fi
}

lab_sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum | cut -d' ' -f1
    else
        shasum -a 256 | cut -d' ' -f1
    fi
}
