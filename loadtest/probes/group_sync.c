// Group commit on this machine's disk: does sharing one sync among many writers' commits cut the
// kernel CPU per commit? Each writer overwrites 2 WAL-sized frames (2 x 4,120 bytes) of its own
// file, as an actor's commit does, then makes them durable in one of four ways:
//   MODE 0  fdatasync its own file (what an actor file does today);
//   MODE 1  wait for a syncer thread's next syncfs() of the whole file system;
//   MODE 2  wait for a syncer thread that fdatasyncs every file written since its last round;
//   MODE 3  write the frames to ONE shared log file instead and wait for the syncer's
//           fdatasync of that log (a node-wide commit log with group commit).
// Prints commits/s, the process's kernel and user CPU per commit, and commits per sync.
//   gcc -O2 -pthread -o /tmp/group_sync loadtest/probes/group_sync.c
//   d=$(mktemp -d /var/tmp/gs.XXXX); for m in 0 1 2 3; do /tmp/group_sync 1000 32 4 $d $m; done
// Usage: group_sync FILES THREADS SECONDS DIR MODE
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
static int files, threads, mode; static double stop_at; static int *fds; static long *counts;
static char frame[2 * (24 + 4096)];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; static pthread_cond_t cv = PTHREAD_COND_INITIALIZER, work = PTHREAD_COND_INITIALIZER;
static long requested = 0, done = 0; static long logoff = 0; static int logfd; static int stopping = 0; static long syncs = 0;
static int pending_fds[1024]; static int npending = 0;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void *syncer(void *a) {
  int batch[1024];
  pthread_mutex_lock(&mu);
  while (1) {
    while (requested == done && !stopping) pthread_cond_wait(&work, &mu);
    if (stopping && requested == done) break;
    long target = requested; int n = npending; memcpy(batch, pending_fds, n * sizeof(int)); npending = 0;
    pthread_mutex_unlock(&mu);
    if (mode == 1) syncfs(fds[0]); else if (mode == 3) fdatasync(logfd); else for (int i = 0; i < n; i++) fdatasync(batch[i]);
    syncs++;
    pthread_mutex_lock(&mu);
    done = target; pthread_cond_broadcast(&cv);
  }
  pthread_mutex_unlock(&mu); return 0;
}
static void *run(void *arg) {
  long t = (long)arg, i = t, n = 0;
  while (now() < stop_at) {
    int fd = fds[i % files];
    if (mode == 3) { long off = __sync_fetch_and_add(&logoff, sizeof frame) % (4096L * 8240); if (pwrite(logfd, frame, sizeof frame, off) != sizeof frame) abort(); fd = logfd; }
    else if (pwrite(fd, frame, sizeof frame, (n % 7) * sizeof frame) != sizeof frame) abort();
    if (mode == 0) { if (fdatasync(fd)) abort(); }
    else {
      pthread_mutex_lock(&mu); long my = ++requested; pending_fds[npending++] = fd; pthread_cond_signal(&work);
      while (done < my) pthread_cond_wait(&cv, &mu);
      pthread_mutex_unlock(&mu);
    }
    i += threads; n++;
  }
  counts[t] = n; return 0;
}
int main(int argc, char **argv) {
  if (argc != 6) { fprintf(stderr, "usage: group_sync FILES THREADS SECONDS DIR MODE\n"); return 2; }
  files = atoi(argv[1]); threads = atoi(argv[2]); mode = atoi(argv[5]);
  if (files < 1 || threads < 1 || threads > 1024) { fprintf(stderr, "1 <= THREADS <= 1024, FILES >= 1\n"); return 2; }
  char path[4096]; static char zero[66 * 1024];
  fds = calloc(files, sizeof *fds); counts = calloc(threads, sizeof *counts); memset(frame, 0x5a, sizeof frame);
  for (int i = 0; i < files; i++) {
    snprintf(path, sizeof path, "%s/f%d", argv[4], i);
    fds[i] = open(path, O_RDWR | O_CREAT, 0600);
    if (fds[i] < 0 || pwrite(fds[i], zero, sizeof zero, 0) != sizeof zero || fsync(fds[i])) { perror(path); return 1; }
  }
  { static char big[8240]; snprintf(path, sizeof path, "%s/log", argv[4]); logfd = open(path, O_RDWR | O_CREAT, 0600); for (int k = 0; k < 4096; k++) pwrite(logfd, big, sizeof big, (long)k * sizeof big); fsync(logfd); }
  pthread_t st; if (mode) pthread_create(&st, 0, syncer, 0);
  struct rusage r0, r1; getrusage(RUSAGE_SELF, &r0); double w0 = now(); stop_at = w0 + atof(argv[3]);
  pthread_t *ts = calloc(threads, sizeof *ts);
  for (long t = 0; t < threads; t++) pthread_create(&ts[t], 0, run, (void *)t);
  for (int t = 0; t < threads; t++) pthread_join(ts[t], 0);
  getrusage(RUSAGE_SELF, &r1); double w1 = now(); long n = 0;
  if (mode) { pthread_mutex_lock(&mu); stopping = 1; pthread_cond_signal(&work); pthread_mutex_unlock(&mu); pthread_join(st, 0); }
  for (int t = 0; t < threads; t++) n += counts[t];
  double sys = (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
  double usr = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6;
  printf("mode=%d threads=%d: %.0f commits/s, sys %.1f usr %.1f us/commit, %.1f commits/sync\n", mode, threads, n / (w1 - w0), sys / n * 1e6, usr / n * 1e6, mode ? (double)n / syncs : 1.0);
  for (int i = 0; i < files; i++) { snprintf(path, sizeof path, "%s/f%d", argv[4], i); unlink(path); }
  return 0;
}
