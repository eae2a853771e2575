#!/bin/sh
# Builds the node agent's images offline (this machine has no registry) and imports them
# into the local Docker Engine:
#   import.sh pause   BINARY TAG   FROM-scratch image running BINARY (the pod sandbox)
#   import.sh busybox BINARY TAG   a busybox root file system, every applet linked, CMD sh
# An image whose content is unchanged is left as it is.
set -eu
kind=$1 bin=$2 tag=$3
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
case $kind in
pause)
    cp "$bin" "$root/pause"
    set -- --change 'ENTRYPOINT ["/pause"]'
    ;;
busybox)
    mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/tmp" "$root/var/www" "$root/dev" "$root/proc" "$root/sys"
    cp "$bin" "$root/bin/busybox"
    for applet in $("$bin" --list); do
        [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
    done
    chmod 1777 "$root/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
    set -- --change 'CMD ["sh"]' --change 'ENV PATH=/bin'
    ;;
*)
    echo "import.sh: unknown image kind $kind" >&2
    exit 2
    ;;
esac
archive() { tar -C "$root" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - .; }
hash=$(archive | sha256sum | cut -c1-16)
if [ "$(docker image inspect -f '{{index .Config.Labels "io.nodeagent.content"}}' "$tag" 2>/dev/null)" = "$hash" ]; then
    exit 0
fi
archive | docker import "$@" --change "LABEL io.nodeagent.content=$hash" - "$tag" >/dev/null
echo "imported $tag"
