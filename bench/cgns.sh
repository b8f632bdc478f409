#!/bin/sh
# Run "$@" where a peer runtime sees cgroup v1 only and nests its memory cgroups below ours.
#
# crun 1.8 refuses hybrid hosts, and Podman and containerd without systemd make cgroups at
# each hierarchy's root.  In a private mount namespace the unified hierarchy is covered by
# an empty tmpfs and the memory hierarchy's mount point shows our own memory cgroup: a bind
# mount of it moved there after the hierarchy's own mount is gone, so that mountinfo lists
# one memory mount, whose root is our cgroup (runc reads the container's cgroup paths
# relative to the first memory mount it finds).  Nothing changes outside that namespace.
# crun leaves a small file per container in the tmpfs (it cannot rmdir there), hence its
# room for a few thousand runs.  On a host without a v1 memory hierarchy (pure v2) the
# command runs as it is.
own=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
[ -n "$own" ] || exec "$@"
exec unshare -m --propagation private sh -c '
    if [ -d /sys/fs/cgroup/unified ]; then
        mount -t tmpfs -o size=256m boxd-peers-unified /sys/fs/cgroup/unified || exit 125
    fi
    held=$(mktemp -d) || exit 125
    mount --bind "/sys/fs/cgroup/memory$0" "$held" &&
        umount /sys/fs/cgroup/memory &&
        mount --move "$held" /sys/fs/cgroup/memory || exit 125
    rmdir "$held"
    exec "$@"' "$own" "$@"
