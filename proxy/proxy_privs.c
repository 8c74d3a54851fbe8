/*
 * proxy_privs: `user:` — drop root after the sockets are bound and the keys are read.
 */
/* setgroups() is not in POSIX; glibc declares it with the default feature set. */
#define _DEFAULT_SOURCE 1

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "proxy_internal.h"

/*
 * proxy_privs_drop(user, err, errlen):
 * Become ${user} (its uid, its primary gid, no supplementary groups).  Refuses to stay root:
 * `user: root`, a user that cannot be found, or a process that is neither root nor already
 * that user are errors, and so is a process that could regain root afterwards.  Returns 0, or
 * -1 with the reason in ${err}.
 */
int
proxy_privs_drop(const char *user, char *err, size_t errlen)
{
    struct passwd *pw;
    gid_t gid;

    errno = 0;
    pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(err, errlen, "user: no user \"%s\" on this machine%s%s", user,
                 errno != 0 ? ": " : "", errno != 0 ? strerror(errno) : "");
        return -1;
    }
    if (pw->pw_uid == 0) {
        snprintf(err, errlen,
                 "user: \"%s\" is root; name an unprivileged user, or remove "
                 "user: to keep running as root",
                 user);
        return -1;
    }
    if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid) {
        return 0; /* already that user (e.g. systemd User=) */
    }
    if (geteuid() != 0) {
        snprintf(err, errlen, "user: cannot switch to \"%s\": ferry is not running as root", user);
        return -1;
    }
    gid = pw->pw_gid;
    /* Order matters: groups and gid while still root, uid last. */
    if (setgroups(1, &gid) != 0 || setgid(gid) != 0 || setuid(pw->pw_uid) != 0) {
        snprintf(err, errlen, "user: cannot switch to \"%s\": %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || geteuid() == 0) {
        snprintf(err, errlen, "user: still able to regain root after switching to \"%s\"", user);
        return -1;
    }
    return 0;
}
