# Helpers shared by bench/run.sh and bench/delivery.sh (sourced; each script defines `die`).

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port: a random free TCP port on 127.0.0.1.
pick_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        port_in_use "$p" || {
            echo "$p"
            return 0
        }
    done
    die "could not find a free port"
}

random_token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
