#!/usr/bin/perl
# A workload for ipctrace top's end-to-end test, one object of each kind under keys KEY..KEY+2:
# - a semaphore set: "semworker" takes sem 0 over and over while "semposter" posts it every
#   10 ms (contended), and "semwaiter" waits on sem 1, which nobody posts (stuck);
# - a queue with qbytes 2048 that "qsender" fills with 256-byte messages nobody receives, so
#   it backs up and qsender blocks in msgsnd (full);
# - a segment that "shmparent" attaches and three forked "shmchild"ren inherit.
# Args: KEY (hex). Prints "semid msqid shmid worker poster waiter sender parent child child
# child" once all are running, and runs until its stdin closes; then removes everything.
use strict;
use warnings;
use IPC::SysV qw(IPC_CREAT IPC_RMID S_IRUSR S_IWUSR);
use IPC::Semaphore;
use IPC::Msg;
use Time::HiRes qw(usleep);

$| = 1;
my $key = hex($ARGV[0]);
my $sem = IPC::Semaphore->new($key, 2, S_IRUSR | S_IWUSR | IPC_CREAT) or die "semget: $!";
$sem->setall(0, 0);
my $msg = IPC::Msg->new($key + 1, S_IRUSR | S_IWUSR | IPC_CREAT) or die "msgget: $!";
$msg->set(qbytes => 2048);
my $shmid = shmget($key + 2, 65536, S_IRUSR | S_IWUSR | IPC_CREAT) // die "shmget: $!";

my @pids;
sub child {
    my ($name, $work) = @_;
    my $pid = fork() // die;
    if ($pid == 0) { $0 = $name; $work->(); exit 0 }
    push @pids, $pid;
    return $pid;
}

my $worker = child("semworker", sub { $sem->op(0, -1, 0) while 1 });
my $poster = child("semposter", sub { while (1) { usleep(10_000); $sem->op(0, 1, 0) } });
my $waiter = child("semwaiter", sub { $sem->op(1, -1, 0) });
my $sender = child("qsender", sub { while (1) { $msg->snd(1, "x" x 256); usleep(5_000) } });
pipe(my $kids_r, my $kids_w) or die "pipe: $!";
my $parent = child("shmparent", sub {
    # shmread attaches and detaches; syscall shmat keeps the mapping.
    my $addr = syscall(30, $shmid, 0, 0);
    die "shmat: $!" if $addr == -1;
    my @kids;
    for (1 .. 3) {
        my $kid = fork() // die;
        if ($kid == 0) { $0 = "shmchild"; sleep 1000 while 1; exit 0 }
        push @kids, $kid;
    }
    syswrite($kids_w, "@kids\n");
    $SIG{TERM} = sub { kill 'KILL', @kids; exit 0 };
    sleep 1000 while 1;
});
close $kids_w;
my $kids = <$kids_r>;
chomp $kids;
print join(" ", $sem->id, $msg->id, $shmid, $worker, $poster, $waiter, $sender, $parent, $kids), "\n";
# Until the test closes our stdin.
1 while defined(<STDIN>);
kill 'TERM', $parent;
kill 'KILL', grep { $_ != $parent } @pids;
waitpid($_, 0) for @pids;
$sem->remove;
$msg->remove;
shmctl($shmid, IPC_RMID, 0);
