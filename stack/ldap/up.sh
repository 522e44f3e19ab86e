# shellcheck shell=bash
# A throwaway OpenLDAP directory that stands in for the on-premises Active Directory of an ANC,
# for health checks against a real directory server. Sourced by stack/up.sh (set -euo pipefail),
# which provides: say, fail, apt_install, as_user, port_open, wait_port, $ROOT, $STACK, $LDAP_PORT.
#
#   ldap_up    installs Debian's slapd + ldap-utils if missing, creates the config and database under
#              $STACK/ldap (seeded once with slapadd), starts slapd as the `openldap` user listening
#              ONLY on ldap://127.0.0.1:$LDAP_PORT, and sets LDAP_URL. A second call with our slapd
#              running does nothing. If this file's config or seed changes, the directory is rebuilt.
#
# Test directory (ALL FIXTURES BELOW ARE TEST-ONLY, NON-SECRET VALUES):
#   suffix         dc=corp,dc=contoso,dc=test         (AD domain corp.contoso.test)
#   admin (rootdn) cn=admin,dc=corp,dc=contoso,dc=test   password: Admin-Test-Only-1!
#   OUs            ou=CloudPCs, ou=ServiceAccounts, ou=Policies
#   users (cn=<name>,ou=ServiceAccounts,...; UPN <name>@corp.contoso.test; userPrincipalName attribute):
#     svcDomainJoin  Join-Test-Only-1!        healthy account (tests never change it)
#     svcRotate      Rotate-Test-Only-1!      healthy; tests change its password (admin modify)
#     svcLocked      Locked-Test-Only-1!      locked: pwdAccountLockedTime 000001010000Z (permanent lock)
#     svcDisabled    Disabled-Test-Only-1!    disabled: pwdEndTime in the past (ppolicy: password disabled)
#     svcExpired     Expired-Test-Only-1!     expired: policy pwdMaxAge 1 day, pwdChangedTime 2020, no grace
#     svcMustChange  MustChange-Test-Only-1!  reset by an admin: pwdReset TRUE under a pwdMustChange policy
#     svcExpiring    Expiring-Test-Only-1!    policy pwdMaxAge 30 days with pwdExpireWarning 30 days, so
#                                             binds carry a "time before expiration" warning; tests move its
#                                             pwdChangedTime (admin + Relax control).
#     svcAdExpiry    AdExpiry-Test-Only-1!    healthy; carries AD's msDS-UserPasswordExpiryTimeComputed
#                                             (a plain stored attribute here; tests set it) to model how
#                                             AD reports when a password expires.
#
# UPN binds: OpenLDAP binds by DN only (a UPN as bind DN is refused with invalidDNSyntax), so the health
# check finds the DN first with an anonymous search for (userPrincipalName=<upn>) under the domain's
# dc= base; the ACL below lets anonymous users search entry/objectClass/userPrincipalName and nothing else.
# Active Directory accepts UPN binds directly.
#
# Password policy: the ppolicy overlay (a module in Debian's slapd 2.5), with ppolicy_use_lockout so a
# bind to a locked account answers accountLocked in the password-policy response control. Default policy:
# pwdLockout TRUE (pwdAccountLockedTime is honoured), pwdMaxFailure 0 (failed binds never lock anyone,
# so tests with wrong passwords stay repeatable), no expiry.

LDAP_SUFFIX="dc=corp,dc=contoso,dc=test"
LDAP_ADMIN_DN="cn=admin,$LDAP_SUFFIX"
LDAP_ADMIN_PASSWORD='Admin-Test-Only-1!'

_ldap_stop_system_slapd() {
  # Debian's postinst may start a system slapd (on 389, /etc/ldap/slapd.d). We do not use it; stop
  # exactly that process (by its pid file) so nothing stray keeps running.
  local pidfile=/run/slapd/slapd.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = slapd ]; then
    say "stopping the system slapd the Debian package started (pid $pid)"
    kill "$pid" 2>/dev/null || true
  fi
}

_ldap_install() {
  if [ -x /usr/sbin/slapd ] && command -v ldapsearch >/dev/null && command -v slappasswd >/dev/null \
    && [ -f /usr/lib/ldap/ppolicy.so ] && [ -f /usr/lib/ldap/back_mdb.so ]; then
    return 0
  fi
  apt_install slapd ldap-utils
  _ldap_stop_system_slapd
  [ -x /usr/sbin/slapd ] || fail "slapd is not installed at /usr/sbin/slapd"
  [ -f /usr/lib/ldap/ppolicy.so ] || fail "the slapd ppolicy module (/usr/lib/ldap/ppolicy.so) is missing"
}

_ldap_hash() { # password -> {SSHA} hash
  slappasswd -h '{SSHA}' -s "$1"
}

_ldap_write_schema() { # file
  cat >"$1" <<'EOF'
# Just enough of Active Directory's user schema for the test directory (the real AD OIDs for the
# attributes). userPrincipalName matches case-insensitively, as in AD.
attributetype ( 1.2.840.113556.1.4.656 NAME 'userPrincipalName'
  DESC 'AD user principal name (test directory)'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.1996 NAME 'msDS-UserPasswordExpiryTimeComputed'
  DESC 'AD: when the password expires, FILETIME (constructed in AD; stored here)'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.4203.666.11.424242.1 NAME 'ancTestAdUser'
  DESC 'test directory: AD-style attributes on an inetOrgPerson'
  SUP top AUXILIARY MAY ( userPrincipalName $ msDS-UserPasswordExpiryTimeComputed ) )
EOF
}

_ldap_write_conf() { # file dir
  local conf=$1 dir=$2
  cat >"$conf" <<EOF
# Generated by stack/ldap/up.sh: a throwaway test directory. Do not edit; edit up.sh.
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include $dir/anc-test.schema

pidfile  $dir/run/slapd.pid
argsfile $dir/run/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
password-hash {SSHA}
sizelimit 100

database mdb
maxsize 67108864
suffix "$LDAP_SUFFIX"
rootdn "$LDAP_ADMIN_DN"
rootpw $(_ldap_hash "$LDAP_ADMIN_PASSWORD")
directory $dir/data
index objectClass eq
index userPrincipalName eq

overlay ppolicy
ppolicy_default "cn=default,ou=Policies,$LDAP_SUFFIX"
ppolicy_use_lockout
ppolicy_hash_cleartext

access to attrs=userPassword
  by self =xw
  by anonymous auth
  by * none
access to attrs=entry,objectClass,userPrincipalName
  by * read
access to *
  by users read
  by * none
EOF
}

_ldap_user() { # name password [extra ldif lines...]
  local name=$1 password=$2; shift 2
  printf 'dn: cn=%s,ou=ServiceAccounts,%s\n' "$name" "$LDAP_SUFFIX"
  printf 'objectClass: inetOrgPerson\nobjectClass: ancTestAdUser\n'
  printf 'cn: %s\nsn: %s\nuid: %s\n' "$name" "$name" "$name"
  printf 'userPrincipalName: %s@corp.contoso.test\n' "$name"
  printf 'userPassword: %s\n' "$(_ldap_hash "$password")"
  local line
  for line in "$@"; do printf '%s\n' "$line"; done
  printf '\n'
}

_ldap_policy() { # cn [extra ldif lines...]
  local cn=$1; shift
  printf 'dn: cn=%s,ou=Policies,%s\n' "$cn" "$LDAP_SUFFIX"
  printf 'objectClass: device\nobjectClass: pwdPolicy\ncn: %s\npwdAttribute: userPassword\n' "$cn"
  printf 'pwdLockout: TRUE\npwdMaxFailure: 0\npwdAllowUserChange: TRUE\n'
  local line
  for line in "$@"; do printf '%s\n' "$line"; done
  printf '\n'
}

_ldap_write_seed() { # file
  local now policies="ou=Policies,$LDAP_SUFFIX"
  now=$(date -u +%Y%m%d%H%M%SZ)
  {
    printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: corp\no: Contoso test directory\n\n' "$LDAP_SUFFIX"
    local ou
    for ou in ServiceAccounts CloudPCs Policies; do
      printf 'dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n' "$ou" "$LDAP_SUFFIX" "$ou"
    done
    _ldap_policy default 'pwdMaxAge: 0' 'pwdMustChange: FALSE'
    _ldap_policy expires-daily 'pwdMaxAge: 86400' 'pwdGraceAuthNLimit: 0' 'pwdMustChange: FALSE'
    _ldap_policy must-change 'pwdMaxAge: 0' 'pwdMustChange: TRUE'
    _ldap_policy expires-monthly 'pwdMaxAge: 2592000' 'pwdExpireWarning: 2592000' 'pwdGraceAuthNLimit: 0' 'pwdMustChange: FALSE'
    _ldap_user svcDomainJoin 'Join-Test-Only-1!'
    _ldap_user svcRotate 'Rotate-Test-Only-1!'
    _ldap_user svcLocked 'Locked-Test-Only-1!' 'pwdAccountLockedTime: 000001010000Z'
    _ldap_user svcDisabled 'Disabled-Test-Only-1!' 'pwdEndTime: 20200101000000Z'
    _ldap_user svcExpired 'Expired-Test-Only-1!' "pwdPolicySubentry: cn=expires-daily,$policies" 'pwdChangedTime: 20200101000000Z'
    _ldap_user svcMustChange 'MustChange-Test-Only-1!' "pwdPolicySubentry: cn=must-change,$policies" 'pwdReset: TRUE'
    _ldap_user svcExpiring 'Expiring-Test-Only-1!' "pwdPolicySubentry: cn=expires-monthly,$policies" "pwdChangedTime: $now"
    _ldap_user svcAdExpiry 'AdExpiry-Test-Only-1!' 'msDS-UserPasswordExpiryTimeComputed: 9223372036854775807'
  } >"$1"
}

_ldap_write_readme() { # file
  cat >"$1" <<EOF
Throwaway OpenLDAP test directory made by stack/ldap/up.sh (slapd -f slapd.conf, mdb in data/).
URL: ldap://127.0.0.1:$LDAP_PORT   suffix: $LDAP_SUFFIX
All passwords here are TEST-ONLY fixtures, not secrets. See the header of stack/ldap/up.sh for the
list of users, passwords and account states. Admin: $LDAP_ADMIN_DN / $LDAP_ADMIN_PASSWORD
Delete this folder (with slapd stopped: bash stack/down.sh) to rebuild it from scratch.
EOF
}

_ldap_running_ours() { # true if the test directory answers on the port
  ldapsearch -x -LLL -o nettimeout=3 -H "ldap://127.0.0.1:$LDAP_PORT" -b "$LDAP_SUFFIX" -s base dn >/dev/null 2>&1
}

_ldap_stop_ours() {
  local dir=$1 pid
  [ -f "$dir/run/slapd.pid" ] || return 0
  pid=$(cat "$dir/run/slapd.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = slapd ]; then
    say "stopping the test directory's slapd (pid $pid) to apply a changed configuration"
    kill "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  fi
  rm -f "$dir/run/slapd.pid" "$STACK/run/slapd.pid"
}

ldap_up() {
  local dir="$STACK/ldap" log="$STACK/log/ldap.log" user=openldap
  LDAP_URL="ldap://127.0.0.1:$LDAP_PORT"
  # The test domain resolves to the loopback directory (for the worker's DNS check; stack/up.sh
  # records it in .stack/env if it writes DNS_OVERRIDES). Kept if the caller already maps it.
  case ",${DNS_OVERRIDES:-}," in
    *,corp.contoso.test=*) ;;
    *) DNS_OVERRIDES="${DNS_OVERRIDES:+$DNS_OVERRIDES,}corp.contoso.test=127.0.0.1" ;;
  esac

  _ldap_install
  id "$user" >/dev/null 2>&1 || fail "the '$user' system user is missing (install the slapd package)"
  mkdir -p "$dir/run" "$dir/data"

  # Build the configuration and seed in a scratch folder and compare with what is live. The stamp
  # ignores the random salts of the password hashes and the seed time, so a rerun matches.
  local fresh stamp_src stamp
  fresh=$(mktemp -d)
  _ldap_write_schema "$fresh/anc-test.schema"
  stamp_src=$(declare -f _ldap_write_schema _ldap_write_conf _ldap_user _ldap_policy _ldap_write_seed)
  stamp=$(printf '%s\n%s\n%s\n' "$stamp_src" "$LDAP_PORT" "$dir" | sha256sum | cut -c1-64)

  if [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$stamp" ] && [ -f "$dir/data/data.mdb" ]; then
    rm -rf "$fresh"
    if port_open "$LDAP_PORT"; then
      _ldap_running_ours || fail "127.0.0.1:$LDAP_PORT answers but is not the test directory ($LDAP_SUFFIX); free the port or set LDAP_PORT"
      return 0
    fi
  else
    _ldap_stop_ours "$dir"
    if port_open "$LDAP_PORT"; then
      rm -rf "$fresh"
      fail "127.0.0.1:$LDAP_PORT is taken by another process; free the port or set LDAP_PORT"
    fi
    say "creating the test directory (OpenLDAP, $LDAP_SUFFIX) in $dir"
    _ldap_write_conf "$fresh/slapd.conf" "$dir"
    _ldap_write_seed "$fresh/seed.ldif"
    rm -rf "$dir/data"
    mkdir -p "$dir/data"
    cp "$fresh/anc-test.schema" "$fresh/slapd.conf" "$fresh/seed.ldif" "$dir/"
    rm -rf "$fresh"
    _ldap_write_readme "$dir/README"
    chmod 0600 "$dir/slapd.conf"
    if [ "$(id -u)" = 0 ]; then chown -R "$user:$user" "$dir"; fi
    as_user "$user" /usr/sbin/slapadd -q -f "$dir/slapd.conf" -l "$dir/seed.ldif" >"$STACK/log/slapadd.log" 2>&1 \
      || { tail -n 20 "$STACK/log/slapadd.log" >&2; fail "slapadd could not load the seed (log: $STACK/log/slapadd.log)"; }
    echo "$stamp" >"$dir/stamp"
  fi

  say "starting OpenLDAP (slapd as $user) on $LDAP_URL"
  : >"$log"
  # Foreground (-d) so its log lands in $log; `-d stats` logs connections and operations (bind DNs,
  # result codes), never passwords. Listens on the loopback URL only.
  if [ "$(id -u)" = 0 ]; then
    setsid nohup runuser -u "$user" -- /usr/sbin/slapd -d stats -h "$LDAP_URL/" -f "$dir/slapd.conf" >>"$log" 2>&1 </dev/null &
  else
    setsid nohup /usr/sbin/slapd -d stats -h "$LDAP_URL/" -f "$dir/slapd.conf" >>"$log" 2>&1 </dev/null &
  fi
  wait_port "$LDAP_PORT" 20 OpenLDAP "$log"
  local i
  for ((i = 0; i < 50; i++)); do [ -s "$dir/run/slapd.pid" ] && break; sleep 0.1; done
  # stack/down.sh stops whatever pid files $STACK/run holds: slapd's own pid (not runuser's).
  [ -s "$dir/run/slapd.pid" ] && cp "$dir/run/slapd.pid" "$STACK/run/slapd.pid"
  _ldap_running_ours || fail "slapd started but the test directory does not answer (log: $log)"
}
