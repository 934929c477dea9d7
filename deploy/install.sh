#!/usr/bin/env bash
# One-command install of a RustBalance node (docs/OPERATIONS.md).
#
#   install.sh --init --target URL --endpoint IP:PORT [options]
#   install.sh --join --token-file FILE --target URL --endpoint IP:PORT [options]
#
# Run it as root on a Debian machine. It installs tor, the binary, the
# `rustbalance` system user, /etc/rustbalance and /var/lib/rustbalance, a
# random master-key passphrase (as a systemd credential), the node's config
# and keys, and the systemd unit; then starts the node if systemd runs.
set -euo pipefail

BIN_DEST=/usr/local/bin/rustbalance
UNIT_DEST=/etc/systemd/system/rustbalance.service
# The Debian package ships the binary and the unit itself.
PKG_BIN=/usr/bin/rustbalance
PKG_UNIT=/lib/systemd/system/rustbalance.service
DROPIN_DIR=/etc/systemd/system/rustbalance.service.d
DROPIN=$DROPIN_DIR/credential.conf
ETC=/etc/rustbalance
STATE=/var/lib/rustbalance
CONFIG=$ETC/rustbalance.toml
PASS=$ETC/master-passphrase
PASS_CRED=$ETC/master-passphrase.cred
CRED_NAME=master-passphrase
USER_NAME=rustbalance

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<'EOF'
Usage:
  install.sh --init --target URL --endpoint IP:PORT [options]
      Install the first node of a new cluster: creates the master key
      (sealed with a random passphrase), the cluster secret, the WireGuard
      key and the join token (/var/lib/rustbalance/join-token).
  install.sh --join --token-file FILE --target URL --endpoint IP:PORT [options]
      Install a node that joins a running cluster over Tor with its join
      token (a secret: from a file, never the command line).

Required:
  --target URL          where clients go: tcp://HOST:PORT or onion://ADDR.onion:PORT
  --endpoint IP:PORT    this machine's WireGuard endpoint as other nodes reach it

Options:
  --name NAME           node name (init default: node1; join default: host name)
  --admin IP:PORT       admin endpoint (default 127.0.0.1:9661)
  --binary PATH         the rustbalance binary to install (default: next to this
                        script, else target/release/rustbalance)
  --no-start            install only; print the commands that would start it
  --credential KIND     how the passphrase reaches the daemon: encrypted
                        (systemd-creds; default when it works here) or plain
                        (a root-only file, LoadCredential=)
  --publisher-eligible  (join) this node may publish; needs --master-key
  --master-key FILE     (join) a copy of the cluster's master key file
  --master-passphrase-file FILE
                        (join) the passphrase that key is sealed with; it
                        becomes this node's passphrase credential
  -h, --help            this help

Nothing is overwritten: an existing config or master key stops the install.
EOF
}

die() {
  echo "install.sh: error: $*" >&2
  exit 1
}
step_no=0
step() {
  step_no=$((step_no + 1))
  echo "[$step_no] $*"
}

mode="" target="" endpoint="" name="" admin="" binary="" no_start=0
token_file="" publisher=0 master_key="" master_pass="" credential=""
while [ $# -gt 0 ]; do
  case "$1" in
    --init) mode="init" ;;
    --join) mode="join" ;;
    --target) target=${2-}; shift ;;
    --endpoint) endpoint=${2-}; shift ;;
    --name) name=${2-}; shift ;;
    --admin) admin=${2-}; shift ;;
    --binary) binary=${2-}; shift ;;
    --no-start) no_start=1 ;;
    --credential) credential=${2-}; shift ;;
    --token-file) token_file=${2-}; shift ;;
    --publisher-eligible) publisher=1 ;;
    --master-key) master_key=${2-}; shift ;;
    --master-passphrase-file) master_pass=${2-}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

[ -n "$mode" ] || { usage >&2; die "give --init or --join"; }
[ -n "$target" ] || die "--target URL is required (e.g. tcp://127.0.0.1:8080)"
[ -n "$endpoint" ] || die "--endpoint IP:PORT is required (this machine's WireGuard endpoint, e.g. 192.0.2.10:51820)"
case "$credential" in
  "" | encrypted | plain) ;;
  *) die "--credential takes encrypted or plain" ;;
esac
if [ "$mode" = join ]; then
  [ -n "$token_file" ] || die "--join needs --token-file FILE (the token never goes on a command line)"
  [ -r "$token_file" ] || die "cannot read the token file $token_file"
  if [ "$publisher" = 1 ]; then
    [ -n "$master_key" ] || die "--publisher-eligible needs --master-key FILE"
    [ -r "$master_key" ] || die "cannot read the master key $master_key"
  elif [ -n "$master_key" ] || [ -n "$master_pass" ]; then
    die "--master-key and --master-passphrase-file go with --publisher-eligible"
  fi
  [ -z "$master_pass" ] || [ -r "$master_pass" ] || die "cannot read $master_pass"
else
  if [ -n "$token_file$master_key$master_pass" ] || [ "$publisher" = 1 ]; then
    die "--token-file, --publisher-eligible, --master-key and --master-passphrase-file are for --join"
  fi
fi

# A worker joins without the master key: it needs no passphrase at all.
need_pass=1
if [ "$mode" = join ] && [ "$publisher" = 0 ]; then
  need_pass=0
fi
if [ "$mode" = join ] && [ "$publisher" = 1 ] && [ -z "$master_pass" ]; then
  # A plain (tor or PEM) master key needs no passphrase; a sealed one (its
  # file starts with "rustbalance-key") does.
  if [ "$(head -c 15 "$master_key")" = rustbalance-key ]; then
    die "$master_key is sealed: give --master-passphrase-file FILE (the passphrase it was sealed with)"
  fi
  need_pass=0
fi

[ "$(id -u)" = 0 ] || die "run this as root (it creates a system user, /etc/rustbalance and a systemd unit)"

# The Debian package already put the binary and the unit in place.
packaged=0
if [ -f "$PKG_UNIT" ] && [ -x "$PKG_BIN" ]; then
  packaged=1
  BIN_DEST=$PKG_BIN
  [ -z "$binary" ] || echo "note: the rustbalance package is installed; --binary is ignored, using $PKG_BIN"
fi

# Refuse to clobber: these are the products of an install, keys above all.
for f in "$CONFIG" "$STATE/master.key" "$STATE/master" "$STATE/cluster.secret"; do
  if [ -e "$f" ]; then
    die "RustBalance is already installed here ($f exists). Nothing was changed.
  To upgrade the binary, see docs/OPERATIONS.md (\"Upgrade\").
  To start over, stop the node and move $ETC and $STATE away first (they hold the keys)."
  fi
done

# The rustbalance binary to install.
if [ "$packaged" = 0 ]; then
  if [ -z "$binary" ]; then
    for c in "$here/rustbalance" "${CARGO_TARGET_DIR:-$here/../target}/release/rustbalance"; do
      if [ -x "$c" ]; then
        binary=$c
        break
      fi
    done
    [ -n "$binary" ] || die "no rustbalance binary found next to this script or in target/release; build one (cargo build --release -p rustbalance) or give --binary PATH"
  fi
  [ -x "$binary" ] || die "--binary $binary is not an executable file"
  [ -f "$here/rustbalance.service" ] || die "$here/rustbalance.service is missing (run install.sh from the deploy directory)"
fi

export DEBIAN_FRONTEND=noninteractive

step "tor"
if command -v tor >/dev/null 2>&1; then
  echo "    already installed: $(command -v tor)"
else
  echo "    apt-get install -y tor"
  apt-get update -qq
  apt-get install -y -qq tor >/dev/null
  # Debian's tor package also enables its own system tor (tor.service);
  # RustBalance runs its own tor and does not use it (see OPERATIONS.md).
fi

step "binary $BIN_DEST"
if [ "$packaged" = 1 ]; then
  echo "    from the rustbalance package"
elif [ -e "$BIN_DEST" ] && cmp -s "$binary" "$BIN_DEST"; then
  echo "    already up to date"
else
  install -m 0755 -o root -g root "$binary" "$BIN_DEST.new"
  mv -f "$BIN_DEST.new" "$BIN_DEST"
  echo "    installed from $binary"
fi
"$BIN_DEST" --version >/dev/null || die "$BIN_DEST does not run on this machine"

step "system user $USER_NAME"
if getent passwd "$USER_NAME" >/dev/null; then
  echo "    exists"
else
  getent group "$USER_NAME" >/dev/null || groupadd --system "$USER_NAME"
  useradd --system --gid "$USER_NAME" --home-dir "$STATE" --no-create-home \
    --shell /usr/sbin/nologin --comment "RustBalance onion-service load balancer" "$USER_NAME"
  echo "    created (no login shell, home $STATE)"
fi

step "directories $ETC (0750 root:$USER_NAME), $STATE (0700 $USER_NAME)"
install -d -m 0750 -o root -g "$USER_NAME" "$ETC"
install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$STATE"

# Does systemd-creds work here (it needs the host key, which `setup` creates)?
creds_work() {
  command -v systemd-creds >/dev/null 2>&1 || return 1
  local t
  t=$(mktemp -d)
  printf 'probe\n' >"$t/p"
  if systemd-creds encrypt --name=probe "$t/p" "$t/c" >/dev/null 2>&1 &&
    [ "$(systemd-creds decrypt --name=probe "$t/c" - 2>/dev/null)" = probe ]; then
    rm -rf "$t"
    return 0
  fi
  rm -rf "$t"
  return 1
}

# The passphrase lives in a root-only temp dir while init/join run.
work=$(mktemp -d /run/rustbalance-install.XXXXXX 2>/dev/null || mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "$need_pass" = 1 ]; then
  step "master-key passphrase"
  if [ -z "$credential" ]; then
    if creds_work; then credential=encrypted; else credential=plain; fi
  elif [ "$credential" = encrypted ] && ! creds_work; then
    die "--credential encrypted: systemd-creds does not work on this machine"
  fi
  mkdir -m 0700 "$work/creds"
  if [ -n "$master_pass" ]; then
    install -m 0600 "$master_pass" "$work/creds/$CRED_NAME"
    echo "    from $master_pass"
  elif [ -s "$PASS" ]; then
    # Left by an install that stopped before the config was written.
    install -m 0600 "$PASS" "$work/creds/$CRED_NAME"
    echo "    reusing $PASS"
  elif [ -s "$PASS_CRED" ]; then
    systemd-creds decrypt --name="$CRED_NAME" "$PASS_CRED" "$work/creds/$CRED_NAME"
    echo "    reusing $PASS_CRED"
  else
    # 32 random bytes, base64: one line. Never printed.
    (umask 077 && head -c 32 /dev/urandom | base64 -w0 >"$work/creds/$CRED_NAME" && echo >>"$work/creds/$CRED_NAME")
    echo "    generated (32 random bytes)"
  fi
  if [ "$credential" = encrypted ]; then
    (umask 077 && systemd-creds encrypt --name="$CRED_NAME" "$work/creds/$CRED_NAME" "$PASS_CRED.new")
    chown root:root "$PASS_CRED.new"
    chmod 0600 "$PASS_CRED.new"
    mv -f "$PASS_CRED.new" "$PASS_CRED"
    rm -f "$PASS"
    echo "    encrypted with systemd-creds: $PASS_CRED (0600 root; LoadCredentialEncrypted=)"
  else
    install -m 0600 -o root -g root "$work/creds/$CRED_NAME" "$PASS.new"
    mv -f "$PASS.new" "$PASS"
    rm -f "$PASS_CRED"
    echo "    $PASS (0600 root; LoadCredential=)"
  fi
fi

common=(--dir "$STATE" --target "$target" --endpoint "$endpoint")
[ -z "$name" ] || common+=(--name "$name")
[ -z "$admin" ] || common+=(--admin "$admin")

if [ "$mode" = init ]; then
  step "rustbalance init (master key, cluster secret, WireGuard key, join token)"
  # As root: the config goes to /etc/rustbalance; ownership is fixed below.
  # The daemon gets the passphrase as a systemd credential, so the config
  # does not name a passphrase file.
  (umask 077 && "$BIN_DEST" init "${common[@]}" --config "$CONFIG" \
    --passphrase-file "$work/creds/$CRED_NAME" --systemd-credential >"$work/init.out")
  address=$(head -n 1 "$work/init.out")
else
  step "rustbalance join (a temporary tor reaches the cluster; this can take minutes)"
  # As the service user: it runs tor and talks to the network. The config is
  # written in the state directory and moved to /etc/rustbalance afterwards.
  staging=$STATE/.install
  rm -rf "$staging"
  install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$staging"
  trap 'rm -rf "$work" "$staging"' EXIT
  join_args=("${common[@]}" --config "$staging/rustbalance.toml")
  env_args=()
  if [ "$publisher" = 1 ]; then
    install -m 0600 -o "$USER_NAME" -g "$USER_NAME" "$master_key" "$STATE/master.key"
    join_args+=(--publisher-eligible --master-key "$STATE/master.key")
    if [ "$need_pass" = 1 ]; then
      # join unseals the key to check it is the cluster's; it reads the
      # passphrase as the daemon will, from $CREDENTIALS_DIRECTORY.
      install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$staging/creds"
      install -m 0600 -o "$USER_NAME" -g "$USER_NAME" "$work/creds/$CRED_NAME" "$staging/creds/$CRED_NAME"
      env_args=(CREDENTIALS_DIRECTORY="$staging/creds")
    fi
  fi
  # The token goes through stdin, never argv.
  (cd "$STATE" && runuser -u "$USER_NAME" -- env "${env_args[@]}" "$BIN_DEST" join \
    --token-file - "${join_args[@]}" <"$token_file" >"$work/join.out")
  install -m 0640 -o root -g "$USER_NAME" "$staging/rustbalance.toml" "$CONFIG.new"
  mv -f "$CONFIG.new" "$CONFIG"
  rm -rf "$staging"
  address=$(head -n 1 "$work/join.out")
fi

step "ownership: $STATE to $USER_NAME, $CONFIG 0640 root:$USER_NAME"
chown -R "$USER_NAME:$USER_NAME" "$STATE"
chmod 0700 "$STATE"
chown root:"$USER_NAME" "$CONFIG"
chmod 0640 "$CONFIG"

step "systemd unit"
if [ "$packaged" = 1 ]; then
  echo "    $PKG_UNIT from the rustbalance package"
else
  install -m 0644 -o root -g root "$here/rustbalance.service" "$UNIT_DEST"
  echo "    $UNIT_DEST"
fi
if [ "$need_pass" = 1 ]; then
  install -d -m 0755 "$DROPIN_DIR"
  if [ "$credential" = encrypted ]; then
    line="LoadCredentialEncrypted=$CRED_NAME:$PASS_CRED"
  else
    line="LoadCredential=$CRED_NAME:$PASS"
  fi
  printf '# Written by install.sh: the master-key passphrase.\n[Service]\n%s\n' "$line" >"$DROPIN.new"
  chmod 0644 "$DROPIN.new"
  mv -f "$DROPIN.new" "$DROPIN"
  echo "    $DROPIN ($line)"
else
  rm -f "$DROPIN"
  echo "    (worker node: no master key, no passphrase credential)"
fi

echo
echo "master address: $address"
if [ "$mode" = init ]; then
  echo "join token:     $STATE/join-token (0600; a secret; copy it to each new machine)"
  echo "add a machine:  install.sh --join --token-file FILE --target $target --endpoint THAT_MACHINE_IP:${endpoint##*:}"
fi
echo

start_cmds=(
  "systemctl daemon-reload"
  "systemctl enable --now rustbalance.service"
  "rustbalance status --config $CONFIG"
)
if [ "$no_start" = 1 ] || [ ! -d /run/systemd/system ]; then
  if [ "$no_start" = 1 ]; then
    echo "not started (--no-start). To start the node, run:"
  else
    echo "systemd is not running on this machine; to start the node under systemd, run:"
  fi
  printf '  %s\n' "${start_cmds[@]}"
  exit 0
fi

step "start"
systemctl daemon-reload
systemctl enable --now rustbalance.service
for _ in $(seq 1 30); do
  if "$BIN_DEST" status --config "$CONFIG" 2>/dev/null; then
    exit 0
  fi
  systemctl is-active --quiet rustbalance.service || break
  sleep 2
done
echo "the node does not answer yet; see: systemctl status rustbalance; journalctl -u rustbalance" >&2
systemctl --no-pager status rustbalance.service >&2 || true
exit 1
