/*
 * The boundary of the spawn path: what the Python glue (sandbox_native.c) prepares and what
 * the child side (child.c: everything between clone and exec) runs.  child.c does not
 * include Python.h, so nothing of the interpreter can be called there by mistake; it uses
 * only async-signal-safe calls (see child.c).
 *
 * The stage, mount-kind and message numbers are listed once, below, as X-macros: they make
 * the C enums here and the tables the extension exports (sandbox_native.STAGES,
 * MOUNT_KINDS, MESSAGES), which tests/test_native_abi.py compares with boxd/_native.py's
 * Stage, MountKind and Message.
 */
#ifndef BOXD_SPAWN_H
#define BOXD_SPAWN_H

#include <linux/filter.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Where a child failed before exec (the `stage` of a FAILED message). */
#define SPAWN_STAGES(X)                                                                        \
    X(SYNC, 1)                                                                                 \
    X(SIGNALS, 2)                                                                              \
    X(SETSID, 3)                                                                               \
    X(STDIO, 4)                                                                                \
    X(TTY, 5)                                                                                  \
    X(JOIN, 6)                                                                                 \
    X(HOSTNAME, 7)                                                                             \
    X(MOUNT, 8)                                                                                \
    X(PIVOT, 9)                                                                                \
    X(SETGROUPS, 10)                                                                           \
    X(SETGID, 11)                                                                              \
    X(SETUID, 12)                                                                              \
    X(CAPS, 13)                                                                                \
    X(RLIMIT, 14)                                                                              \
    X(NO_NEW_PRIVS, 15)                                                                        \
    X(CHDIR, 16)                                                                               \
    X(SECCOMP, 17)                                                                             \
    X(CLOSE_FDS, 18)                                                                           \
    X(EXEC, 19)                                                                                \
    X(FORK, 20)                                                                                \
    X(CGROUP_NS, 21)                                                                           \
    X(LOOPBACK, 22)                                                                            \
    X(ATTACH, 23)                                                                              \
    X(CONSOLE, 24)                                                                             \
    X(START, 25)                                                                               \
    X(SHIM, 26)                                                                                \
    X(CGROUP, 27)                                                                              \
    X(NETWORK, 28)                                                                             \
    X(NET_NS, 29)                                                                              \
    X(AFFINITY, 30)                                                                            \
    X(IPC_NS, 31)

/* One step of the mount table (struct mount_op.kind); see MountKind in boxd/_native.py. */
#define SPAWN_MOUNT_KINDS(X)                                                                   \
    X(MOUNT, 0)                                                                                \
    X(MKDIR, 1)                                                                                \
    X(SYMLINK, 2)                                                                              \
    X(MKNOD, 3)                                                                                \
    X(BIND_DEV, 4)                                                                             \
    X(REMOUNT_RO, 5)                                                                           \
    X(MASK, 6)                                                                                 \
    X(WRITE_FILE, 7)                                                                           \
    X(MKFILE, 8)                                                                               \
    X(SYSCTL, 9)                                                                               \
    X(CHDIR, 10)                                                                               \
    X(ATTACH, 11)

/* The kinds of struct sync_msg, the one record parent and child exchange on the sync socket
 * (and the shim's intermediate on its report socket):
 *   RELEASE  parent -> child: go on; carries the detached id-mapped trees (SCM_RIGHTS)
 *   FAILED   child -> parent: {stage, err, value = the failing item's index}, then exit
 *   CONSOLE  child -> parent: the terminal's master (SCM_RIGHTS)
 *   WAITING  child -> parent: set up, waiting for the OCI runtime's `start` (start_fd)
 *   STARTED  shim intermediate -> parent: value = the container's pid, its pidfd attached
 *   LINKED   parent -> child: the interfaces of its links are in its network namespace
 *            (sent after RELEASE: the child sets up its mounts meanwhile, and waits for
 *            this before it configures them)
 *   SYSINFO  child -> parent: the listener of its sysinfo filter (SCM_RIGHTS), sent just
 *            before its own seccomp filter is loaded; without an fd, err = why the
 *            kernel refused the listener (the process goes on without it)
 * End of file means the exec happened. */
#define SPAWN_MESSAGES(X)                                                                      \
    X(RELEASE, 1)                                                                              \
    X(FAILED, 2)                                                                               \
    X(CONSOLE, 3)                                                                              \
    X(WAITING, 4)                                                                              \
    X(STARTED, 5)                                                                              \
    X(LINKED, 6)                                                                               \
    X(SYSINFO, 7)

enum stage {
#define X(name, value) STAGE_##name = value,
    SPAWN_STAGES(X)
#undef X
};

enum mount_kind {
#define X(name, value) MK_##name = value,
    SPAWN_MOUNT_KINDS(X)
#undef X
};

enum sync_kind {
#define X(name, value) MSG_##name = value,
    SPAWN_MESSAGES(X)
#undef X
};

struct sync_msg {
    int32_t kind; /* enum sync_kind */
    int32_t stage; /* FAILED: enum stage */
    int32_t err; /* FAILED: errno */
    int32_t value; /* FAILED: index (-1: none); STARTED: pid */
};

/* The most namespaces a child joins by fd (network, IPC, UTS, cgroup). */
#define MAX_JOIN 4
/* The most detached mount trees (id-mapped image layers) a child takes with its release. */
#define MAX_ATTACH 16
/* The most v1 hierarchies a child places itself in (their `tasks` files). */
#define MAX_CGROUP_TASKS 16
/* The most interfaces a child configures (one per network the container starts on). */
#define MAX_LINKS 32
/* The most detached bind trees a child attaches (mount_fds). */
#define MAX_MOUNT_FDS 64

/* One of the container's interfaces: a veth end the parent moved into the child's new
 * network namespace while it waited, which the child gives its address and brings up. */
struct link_config {
    char name[16]; /* IFNAMSIZ, NUL-terminated */
    uint32_t address, netmask; /* network byte order */
};

struct mount_op {
    int kind; /* enum mount_kind */
    const char *target, *source, *fstype, *data;
    unsigned long flags;
    unsigned int mode;
    unsigned long long dev;
};

struct rlimit64_k {
    int resource;
    uint64_t cur, max;
};

/* The stack of a child that shares the caller's memory (CLONE_VM) until it execs or exits.
 * `alive` is set before the clone and cleared by the kernel (CLONE_CHILD_CLEARTID) when
 * the child leaves that memory; until then the stack and the plan it reads stay mapped
 * and unchanged.  `tid` is 0 until the kernel writes the child's id there
 * (CLONE_PARENT_SETTID), once the child exists: a cloner killed before that (in the
 * clone, which a SIGKILL interrupts) leaves `alive` set with no child to clear it. */
struct vm_stack {
    char *base;
    size_t size;
    int alive;
    int tid;
};

/* Everything the child does, converted from the SpawnPlan before the clone. */
struct plan {
    char **argv, **envp;
    const char **search;
    size_t nsearch;
    const char *hostname, *rootfs, *cwd, *name;
    struct mount_op *mounts;
    size_t nmounts;
    const char **attach;
    size_t nattach;
    unsigned int uid, gid;
    gid_t *groups;
    size_t ngroups;
    int stdio[3];
    int console;
    /* The console's size (TIOCSWINSZ) before the exec: rows, columns, each 1..65535. */
    unsigned short console_rows, console_cols;
    struct rlimit64_k *rlimits;
    size_t nrlimits;
    int has_caps;
    uint64_t bounding, effective, permitted, inheritable, ambient;
    int nnp;
    /* The umask from the mounts on (what they and the process create), -1: the caller's. */
    int umask;
    struct sock_filter *filter;
    unsigned short nfilter;
    /* Non-zero: sysinfo(2) goes to a listener (SECCOMP_RET_USER_NOTIF) the parent answers
     * from, loaded before `filter` and sent to the parent (SYSINFO).  Only with a filter. */
    int sysinfo;
    int join_pidfd;
    uint64_t clone_flags, join_flags;
    int sync_fd, report_fd;
    const char *shim_path, *shim_dir;
    char **shim_argv;
    int start_fd, keep_fds;
    /* Non-zero: SIGKILL once the caller (caller_pid, the spawning process) is gone, from
     * the end of the set-up on (child.c, die_with_caller). */
    int die_with_caller;
    pid_t caller_pid;
    int ns_fds[MAX_JOIN], ns_types[MAX_JOIN];
    size_t nns;
    /* Detached trees (open_tree) of bind sources, made by the parent for a container in a
     * new user namespace, whose root may not reach a source by path: ATTACH steps move
     * them onto their targets.  Kept until the mount table has run, closed after. */
    int mount_fds[MAX_MOUNT_FDS];
    size_t nmount_fds;
    /* The container's cgroups: `tasks` of each v1 hierarchy, opened O_WRONLY by the parent,
     * to which the new process writes "0" as its first step; the v2 directory (-1: none),
     * which clone3 places it in (CLONE_INTO_CGROUP). */
    int cgroup_tasks[MAX_CGROUP_TASKS];
    size_t ntasks;
    int cgroup_dir;
    /* The CPU the caller's thread ran on as it spawned this process (-1: unknown): the
     * process sets up on the other CPUs it may use, if any (see child.c). */
    int caller_cpu;
    /* The container's interfaces, configured once the parent has made them (LINKED), after
     * the mounts; the default route's gateway (network byte order, 0: none), added once they
     * are up. */
    struct link_config links[MAX_LINKS];
    size_t nlinks;
    uint32_t gateway;
    /* Shim and join mode: the stack the intermediate clones the container (or the final
     * process) on (CLONE_VM); NULL: a copy (join mode into a user namespace). */
    struct vm_stack *container_stack;
};

/* Namespaces of clone_flags the container's process makes itself (unshare, once released)
 * rather than clone3 in the caller: the cgroup one (after it joined its cgroups), a
 * network namespace the parent moves no interface into (making one waits for the kernel's
 * network locks, milliseconds while other namespaces come and go, and that wait is then
 * the child's, not the caller's thread's; with links, clone3 makes it, so that the parent
 * can make the interfaces in it while the child sets up its mounts), and in a new user
 * namespace the IPC one, made by the namespace's root (as runc makes it) so that its
 * mqueue file system's root is that root's, not the unmapped host root's. */
static inline uint64_t unshared_by_child(const struct plan *p)
{
    uint64_t ipc = p->clone_flags & CLONE_NEWUSER ? CLONE_NEWIPC : 0;
    return p->clone_flags & (CLONE_NEWCGROUP | ipc | (p->nlinks == 0 ? CLONE_NEWNET : 0));
}

/* The kernel's struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7). */
struct clone_args_v2 {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    uint64_t set_tid, set_tid_size, cgroup;
};

/* Child side (child.c).  spawn_clone runs clone3 with every signal blocked (no signal
 * handler of the caller's may run in the child) and `body` in the child; with a stack, the
 * child shares the caller's memory (CLONE_VM) on that stack until it execs or exits.  It
 * returns the pid, or -errno, in the caller.  The caller sets CLONE_INTO_CGROUP in `args`
 * for a process that goes into the container's v2 cgroup (not a shim's intermediate). */
long spawn_clone(struct clone_args_v2 *args, struct vm_stack *stack, const struct plan *p,
                 void (*body)(const struct plan *));
/* The bodies: the container's process (steps 0-13 in child.c), join mode's intermediate,
 * shim mode's intermediate. */
__attribute__((noreturn)) void child_main(const struct plan *p);
__attribute__((noreturn)) void intermediate_main(const struct plan *p);
__attribute__((noreturn)) void shim_main(const struct plan *p);
/* rebind()'s child, cloned as spawn_clone does: in the mount namespace of pidfd, each
 * trees[i] replaces what is mounted at targets[i]; the failing index and errno go to
 * `report` as two ints.  Returns the pid, or -1 with errno, in the parent. */
long rebind_clone(int pidfd, size_t n, const int *trees, const char *const *targets,
                  int report);
/* clone_tree()'s child when it names a mount namespace: in the namespace of nsfd (a
 * namespace file or pidfd), a detached copy of the mount at path (open_tree with flags),
 * opened into the fd table it shares with the caller; that fd, or -1 and errno, go to
 * `report` as two ints.  Returns the pid, or -1 with errno, in the parent. */
long tree_clone(int nsfd, const char *path, unsigned int flags, int report);

#endif
