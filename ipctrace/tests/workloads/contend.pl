#!/usr/bin/perl
# Semaphore contention for ipctrace's lat tests: "pgworker" takes sem 0 twenty times while
# "pgwriter" posts it every 5 ms, each time once the worker is asleep in semtimedop (so all
# twenty takes block, however late the worker is scheduled), and also uses sem 1 uncontended.
# Args: KEY. Waits for a line on stdin (the tracer is attached), prints "semid worker_pid
# writer_pid" at the end.
use strict;
use warnings;
use IPC::SysV qw(IPC_CREAT S_IRUSR S_IWUSR);
use IPC::Semaphore;
use Time::HiRes qw(usleep);

$| = 1;

# True once PID sleeps in semtimedop(2) (220 on x86_64): /proc/PID/syscall says "running" for a
# task that runs or waits for a core.
sub asleep_in_semtimedop {
    my ($pid) = @_;
    open(my $f, '<', "/proc/$pid/syscall") or return 0;
    my $line = <$f> // '';
    return $line =~ /^220 /;
}

my $key = hex($ARGV[0]);
my $sem = IPC::Semaphore->new($key, 2, S_IRUSR | S_IWUSR | IPC_CREAT) or die "semget: $!";
$sem->setval(0, 0);
<STDIN>;
my $worker = fork() // die;
if ($worker == 0) { $0 = "pgworker"; $sem->op(0, -1, 0) for 1 .. 20; exit 0 }
my $writer = fork() // die;
if ($writer == 0) {
    $0 = "pgwriter";
    for (1 .. 20) {
        usleep(5000);
        usleep(200) until asleep_in_semtimedop($worker);
        $sem->op(0, 1, 0);
        $sem->op(1, 1, 0);
        $sem->op(1, -1, 0);
    }
    exit 0;
}
waitpid($_, 0) for $worker, $writer;
my $id = $sem->id;
$sem->remove;
print "$id $worker $writer\n";
