#!/usr/bin/perl
# Semaphore contention for ipctrace's lat tests: "pgworker" takes sem 0 twenty times while
# "pgwriter" posts it every 5 ms and also uses sem 1 uncontended. Args: KEY. Waits for a line
# on stdin (the tracer is attached), prints "semid worker_pid writer_pid" at the end.
use strict;
use warnings;
use IPC::SysV qw(IPC_CREAT S_IRUSR S_IWUSR);
use IPC::Semaphore;
use Time::HiRes qw(usleep);

$| = 1;
my $key = hex($ARGV[0]);
my $sem = IPC::Semaphore->new($key, 2, S_IRUSR | S_IWUSR | IPC_CREAT) or die "semget: $!";
$sem->setval(0, 0);
<STDIN>;
my $worker = fork() // die;
if ($worker == 0) { $0 = "pgworker"; $sem->op(0, -1, 0) for 1 .. 20; exit 0 }
my $writer = fork() // die;
if ($writer == 0) {
    $0 = "pgwriter";
    for (1 .. 20) { usleep(5000); $sem->op(0, 1, 0); $sem->op(1, 1, 0); $sem->op(1, -1, 0) }
    exit 0;
}
waitpid($_, 0) for $worker, $writer;
my $id = $sem->id;
$sem->remove;
print "$id $worker $writer\n";
