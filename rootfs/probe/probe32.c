/* probe32: an i386 program (no libc) for the tests of the seccomp filter's 32-bit x86
 * calls on an x86_64 host.  It makes a fixed set of system calls through int $0x80 and
 * prints one "name=result" line each: "ok" or the errno's number.  Each call is harmless
 * where nothing filters it, even as root (mount gets no target: EFAULT).
 *
 * Build: gcc -m32 -static -nostdlib -fno-stack-protector -O2 -Wall -Wextra -Werror
 *        -o probe32 probe32.c
 */
static long sys_call(long nr, long a, long b, long c)
{
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
    return ret;
}

enum { NR_EXIT_GROUP = 252, NR_WRITE = 4, NR_GETPID = 20, NR_MOUNT = 21, NR_SOCKET = 359,
       NR_CLONE3 = 435, NR_UNKNOWN = 1000 };

static void say(const char *name, long ret)
{
    char line[64];
    int n = 0;
    while (*name)
        line[n++] = *name++;
    line[n++] = '=';
    if (ret >= 0) {
        line[n++] = 'o';
        line[n++] = 'k';
    } else {
        char digits[12];
        int d = 0;
        for (unsigned long v = (unsigned long)-ret; v; v /= 10)
            digits[d++] = (char)('0' + v % 10);
        while (d)
            line[n++] = digits[--d];
    }
    line[n++] = '\n';
    sys_call(NR_WRITE, 1, (long)line, n);
}

void _start(void)
{
    say("getpid", sys_call(NR_GETPID, 0, 0, 0));
    say("mount", sys_call(NR_MOUNT, 0, 0, 0));
    say("socket_vsock", sys_call(NR_SOCKET, 40, 1, 0));
    say("clone3", sys_call(NR_CLONE3, 0, 0, 0));
    say("unknown", sys_call(NR_UNKNOWN, 0, 0, 0));
    sys_call(NR_EXIT_GROUP, 0, 0, 0);
    for (;;)
        ;
}
