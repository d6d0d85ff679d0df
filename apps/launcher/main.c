/*
 * main.c - moat-launch: start the agent from the right A/B slot.
 *
 * systemd runs moat-launch; it loads the boot record, decides which slot runs
 * (a new image on trial, or the confirmed one, or a rollback), persists that
 * decision, checks the image against the SHA-256 and size in the record, and
 * execs it with MOAT_SLOT* in the environment. The PID stays the same, so
 * systemd's notify and watchdog see the agent itself. When the agent exits,
 * systemd starts moat-launch again: that is what counts trial starts.
 *
 * It also installs a local file into a slot (provisioning, tests), confirms
 * a slot by hand, and prints the update state as JSON. docs/SLOTS.md.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moat/posix_slots.h"
#include "moat/slots.h"

#define EXIT_NO_IMAGE 1
#define EXIT_USAGE 2

static const char usage[] =
    "usage: moat-launch [--dir DIR] [-- AGENT-ARGS...]\n"
    "       moat-launch [--dir DIR] --status\n"
    "       moat-launch [--dir DIR] --install FILE --version V [--counter N]\n"
    "                   [--trials N] [--confirmed]\n"
    "       moat-launch [--dir DIR] --confirm [--slot a|b]\n"
    "\n"
    "Runs the agent image of the right A/B slot: a new image on trial, the\n"
    "confirmed one, or the previous one when a trial image did not confirm.\n"
    "The image's SHA-256 and size are checked against the boot record first.\n"
    "\n"
    "  --dir DIR        the slot directory (default " MOAT_SLOTS_DEFAULT_DIR ")\n"
    "  --status         print the update state as JSON\n"
    "  --install FILE   copy FILE into the free slot; it runs on trial at the\n"
    "                   next start (no signature check: for provisioning)\n"
    "  --version V      its version (with --install)\n"
    "  --counter N      its security counter (default 0; never below the device's)\n"
    "  --trials N       trial starts it gets (default 3)\n"
    "  --confirmed      active at once, no trial (factory provisioning)\n"
    "  --confirm        confirm the slot in $MOAT_SLOT, or --slot\n"
    "  -h, --help       this text\n"
    "\n"
    "exit codes: 1 no image can run, or it cannot be started; 2 usage error;\n"
    "            otherwise the agent's own\n";

typedef struct opts {
    const char *dir;
    const char *install;
    const char *version;
    unsigned long counter;
    unsigned long trials;
    bool confirmed;
    bool status;
    bool confirm;
    int slot; /* -1: from the environment */
} opts;

static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    char *end;

    errno = 0;
    *out = strtoul(s, &end, 10);
    return errno == 0 && end != s && *end == '\0' && s[0] != '-' && *out <= max ? 0 : -1;
}

static int parse(int argc, char **argv, opts *o)
{
    static const struct option longs[] = {
        {"dir", required_argument, NULL, 'd'},
        {"status", no_argument, NULL, 's'},
        {"install", required_argument, NULL, 'i'},
        {"version", required_argument, NULL, 'V'},
        {"counter", required_argument, NULL, 'c'},
        {"trials", required_argument, NULL, 't'},
        {"confirmed", no_argument, NULL, 'C'},
        {"confirm", no_argument, NULL, 'k'},
        {"slot", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(o, 0, sizeof *o);
    o->dir = MOAT_SLOTS_DEFAULT_DIR;
    o->slot = -1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:h", longs, NULL)) != -1) {
        switch (c) {
        case 'd': o->dir = optarg; break;
        case 's': o->status = true; break;
        case 'i': o->install = optarg; break;
        case 'V': o->version = optarg; break;
        case 'C': o->confirmed = true; break;
        case 'k': o->confirm = true; break;
        case 'c':
            if (parse_ulong(optarg, UINT32_MAX, &o->counter) != 0) {
                fprintf(stderr, "moat-launch: --counter: expected 0 to 4294967295, got '%s'\n",
                        optarg);
                return EXIT_USAGE;
            }
            break;
        case 't':
            if (parse_ulong(optarg, MOAT_BOOT_MAX_TRIALS, &o->trials) != 0 || o->trials == 0) {
                fprintf(stderr, "moat-launch: --trials: expected 1 to %u, got '%s'\n",
                        MOAT_BOOT_MAX_TRIALS, optarg);
                return EXIT_USAGE;
            }
            break;
        case 'S':
            if (strcmp(optarg, "a") != 0 && strcmp(optarg, "b") != 0) {
                fprintf(stderr, "moat-launch: --slot: expected a or b, got '%s'\n", optarg);
                return EXIT_USAGE;
            }
            o->slot = optarg[0] == 'a' ? MOAT_BOOT_SLOT_A : MOAT_BOOT_SLOT_B;
            break;
        case 'h': fputs(usage, stdout); return -1;
        case ':':
            fprintf(stderr, "moat-launch: option '%s' needs a value\n%s", argv[optind - 1],
                    usage);
            return EXIT_USAGE;
        default:
            fprintf(stderr, "moat-launch: unknown option '%s'\n%s", argv[optind - 1], usage);
            return EXIT_USAGE;
        }
    }
    if ((o->status ? 1 : 0) + (o->install ? 1 : 0) + (o->confirm ? 1 : 0) > 1) {
        fprintf(stderr, "moat-launch: --status, --install and --confirm go alone\n");
        return EXIT_USAGE;
    }
    if (o->install != NULL && o->version == NULL) {
        fprintf(stderr, "moat-launch: --install needs --version\n");
        return EXIT_USAGE;
    }
    if ((o->status || o->install || o->confirm) && optind < argc) {
        fprintf(stderr, "moat-launch: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    return 0;
}

/* A JSON string: the versions and words hold printable ASCII only. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    }
    putchar('"');
}

static const char *state_name(uint8_t st)
{
    switch (st) {
    case MOAT_BOOT_PENDING: return "pending";
    case MOAT_BOOT_CONFIRMED: return "confirmed";
    case MOAT_BOOT_REJECTED: return "rejected";
    case MOAT_BOOT_WRITING: return "writing";
    default: return "empty";
    }
}

static int do_status(moat_slots *s)
{
    moat_boot_status st;
    const moat_boot_record *r;
    const moat_boot_slot_info *si;
    char name[2] = {0, 0};
    unsigned i, k;

    if (moat_slots_status(s, &st) != MOAT_OK) {
        fprintf(stderr, "moat-launch: %s\n", moat_slots_error(s));
        return EXIT_NO_IMAGE;
    }
    r = moat_boot_record_get(&s->boot);
    printf("{\"slot\":\"%c\",\"active\":\"%c\",\"pending\":\"%c\",\"state\":\"%s\","
           "\"trial\":%s,\"trialsleft\":%u,\"version\":",
           st.slot, st.active, st.pending, st.state, st.trial ? "true" : "false",
           st.trials_left);
    json_str(st.version);
    printf(",\"securitycounter\":%lu,\"rollback\":", (unsigned long)st.security_counter);
    json_str(st.reason);
    printf(",\"slots\":{");
    for (i = 0; i < MOAT_BOOT_SLOTS; i++) {
        si = &r->slot[i];
        name[0] = moat_boot_slot_name((uint8_t)i);
        printf("%s\"%s\":{\"state\":\"%s\"", i ? "," : "", name, state_name(si->state));
        if (si->state != MOAT_BOOT_EMPTY && si->state != MOAT_BOOT_WRITING) {
            printf(",\"version\":");
            json_str(si->image.version);
            printf(",\"size\":%lu,\"securitycounter\":%lu,\"trialstarts\":%u,\"sha256\":\"",
                   (unsigned long)si->image.size, (unsigned long)si->image.security_counter,
                   si->trial_starts);
            for (k = 0; k < 32; k++)
                printf("%02x", si->image.sha256[k]);
            putchar('"');
        }
        putchar('}');
    }
    printf("}}\n");
    return 0;
}

static int do_install(moat_slots *s, const opts *o)
{
    uint8_t slot = MOAT_BOOT_NONE;
    moat_err e = moat_slots_install_file(s, o->install, o->version, (uint32_t)o->counter,
                                         (unsigned)o->trials,
                                         o->confirmed ? MOAT_BOOT_INSTALL_CONFIRMED : 0, &slot);

    if (e != MOAT_OK) {
        fprintf(stderr, "moat-launch: install %s: %s\n", o->install, moat_slots_error(s));
        return EXIT_NO_IMAGE;
    }
    fprintf(stderr, "moat-launch: installed %s into slot %c (version %s)%s\n", o->install,
            moat_boot_slot_name(slot), o->version,
            o->confirmed ? ": active now" : ": it runs on trial at the next start");
    return 0;
}

static int do_confirm(moat_slots *s, const opts *o)
{
    uint8_t slot;
    bool trial;

    if (o->slot >= 0)
        slot = (uint8_t)o->slot;
    else if (moat_slots_running(&slot, &trial) != MOAT_OK) {
        fprintf(stderr, "moat-launch: --confirm: no --slot and no %s in the environment\n",
                MOAT_SLOTS_ENV_SLOT);
        return EXIT_USAGE;
    }
    if (moat_slots_confirm(s, slot) != MOAT_OK) {
        fprintf(stderr, "moat-launch: confirm: %s\n", moat_slots_error(s));
        return EXIT_NO_IMAGE;
    }
    return 0;
}

/* The chosen file must be exactly the image the record verified: a longer
 * file would run bytes nobody checked. */
static int check_size(const char *path, uint32_t size)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "moat-launch: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size != size) {
        fprintf(stderr, "moat-launch: %s: %lld bytes, but the boot record says %lu: "
                "refusing to run it\n", path, (long long)st.st_size, (unsigned long)size);
        return -1;
    }
    return 0;
}

static int do_run(moat_slots *s, int argc, char **argv)
{
    moat_boot_choice c;
    moat_boot_status st;
    char num[16];
    const char *path;
    char **nargv;
    int i, n = argc - optind;

    if (moat_slots_decide(s, &c) != MOAT_OK) {
        fprintf(stderr, "moat-launch: %s\n", moat_slots_error(s));
        return EXIT_NO_IMAGE;
    }
    if (moat_slots_error(s)[0] != '\0')
        fprintf(stderr, "moat-launch: warning: %s\n", moat_slots_error(s));
    moat_boot_status_get(&s->boot, &st);
    path = moat_slots_path(s, c.slot);
    if (c.trial)
        fprintf(stderr, "moat-launch: slot %c (version %s) on trial: %u trial start%s left "
                "after this one\n", moat_boot_slot_name(c.slot), c.image.version,
                c.trials_left, c.trials_left == 1 ? "" : "s");
    else
        fprintf(stderr, "moat-launch: slot %c (version %s)%s\n", moat_boot_slot_name(c.slot),
                c.image.version, strcmp(st.state, "fallback") == 0
                                     ? ": not confirmed, no confirmed image can run" : "");
    if (st.reason[0] != '\0' && !c.trial)
        fprintf(stderr, "moat-launch: last rollback: %s\n", st.reason);
    if (check_size(path, c.image.size) != 0)
        return EXIT_NO_IMAGE;
    snprintf(num, sizeof num, "%u", c.trials_left);
    if (setenv(MOAT_SLOTS_ENV_DIR, s->dir, 1) != 0 ||
        setenv(MOAT_SLOTS_ENV_SLOT, c.slot == MOAT_BOOT_SLOT_A ? "a" : "b", 1) != 0 ||
        setenv(MOAT_SLOTS_ENV_TRIAL, c.trial ? "1" : "0", 1) != 0 ||
        setenv(MOAT_SLOTS_ENV_TRIALS_LEFT, num, 1) != 0 ||
        setenv(MOAT_SLOTS_ENV_VERSION, c.image.version, 1) != 0) {
        fprintf(stderr, "moat-launch: setenv: %s\n", strerror(errno));
        return EXIT_NO_IMAGE;
    }
    nargv = calloc((size_t)n + 2, sizeof *nargv);
    if (nargv == NULL) {
        fprintf(stderr, "moat-launch: out of memory\n");
        return EXIT_NO_IMAGE;
    }
    nargv[0] = (char *)path;
    for (i = 0; i < n; i++)
        nargv[i + 1] = argv[optind + i];
    fflush(NULL);
    execv(path, nargv);
    fprintf(stderr, "moat-launch: cannot run %s: %s\n", path, strerror(errno));
    free(nargv);
    return EXIT_NO_IMAGE;
}

int main(int argc, char **argv)
{
    static moat_slots s;
    opts o;
    int rc = parse(argc, argv, &o);

    if (rc != 0)
        return rc < 0 ? 0 : rc;
    if (moat_slots_open(&s, o.dir, o.install != NULL) != MOAT_OK) {
        fprintf(stderr, "moat-launch: %s\n", moat_slots_error(&s));
        return EXIT_NO_IMAGE;
    }
    if (o.status)
        rc = do_status(&s);
    else if (o.install)
        rc = do_install(&s, &o);
    else if (o.confirm)
        rc = do_confirm(&s, &o);
    else
        rc = do_run(&s, argc, argv);
    moat_slots_close(&s);
    return rc;
}
