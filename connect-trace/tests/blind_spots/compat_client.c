/* A 32-bit client for tests/blind_spots.rs: connects to 127.0.0.1:PORT
 * through the compat system call named by its first argument, once a byte
 * arrives on stdin (so that the test can start tracing this process
 * first), and prints what the call returned and errno. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/net.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char go;
    if (argc != 3 || read(0, &go, 1) != 1)
        return 2;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 3;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[2]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    long ret;
    if (strcmp(argv[1], "socketcall") == 0) {
        unsigned long args[3] = {(unsigned long)fd, (unsigned long)&addr, sizeof addr};
        ret = syscall(SYS_socketcall, SYS_CONNECT, args);
    } else {
        ret = syscall(SYS_connect, fd, &addr, sizeof addr);
    }
    printf("%ld %d\n", ret, ret < 0 ? errno : 0);
    fflush(stdout);
    return 0;
}
