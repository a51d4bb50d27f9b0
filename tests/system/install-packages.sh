#!/bin/sh
# Install the Debian packages that postwatch's real-component tests run: postfix (postmap,
# postconf, postsuper, postqueue), dovecot-core (doveadm), dovecot-submissiond (Dovecot as
# the submission server in front of Postfix), fail2ban (fail2ban-regex),
# postgresql (initdb, pg_ctl), systemd-journal-remote (journal files for journalctl) and
# logrotate (rotation while following) and systemd (systemd-analyze verify of the unit).
# Extra package names may be given as arguments (make bench asks for pflogsumm).
# Their services are not started: the tests start private instances on loopback themselves.
set -eu

missing=""
want() {  # want PACKAGE TEST-COMMAND...
    pkg=$1; shift
    if ! "$@" >/dev/null 2>&1; then missing="$missing $pkg"; fi
}
want postfix test -x /usr/sbin/postmap
want dovecot-core test -x /usr/bin/doveadm
want dovecot-submissiond test -x /usr/lib/dovecot/submission
want fail2ban test -x /usr/bin/fail2ban-regex
want postgresql sh -c 'ls /usr/lib/postgresql/*/bin/initdb'
want systemd-journal-remote test -x /lib/systemd/systemd-journal-remote
want logrotate test -x /usr/sbin/logrotate
want systemd test -x /usr/bin/systemd-analyze
for extra in "$@"; do
    want "$extra" sh -c "dpkg-query -W -f='\${Status}' $extra | grep -q 'install ok installed'"
done

[ -z "$missing" ] && exit 0
echo "installing Debian packages:$missing"

run_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root (or sudo) to install:$missing" >&2; exit 1; fi
}

# Keep the packages' own services from starting: a policy-rc.d that says no, removed after.
policy=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$policy" ]; then
    run_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    added_policy=yes
fi
trap '[ -n "$added_policy" ] && run_root rm -f "$policy"' EXIT

export DEBIAN_FRONTEND=noninteractive
run_root apt-get update -qq
# shellcheck disable=SC2086
run_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $missing
