#!/usr/bin/perl
# A mixed SysV IPC workload through Perl's own modules, for ipctrace's end-to-end test.
# Waits for a line on stdin (the tracer is attached), then prints "semid msqid shmid".
use strict;
use warnings;
use IPC::SysV qw(IPC_PRIVATE IPC_CREAT IPC_RMID IPC_NOWAIT S_IRUSR S_IWUSR);
use IPC::Msg;
use IPC::Semaphore;

$| = 1;
<STDIN>;
my $mode = S_IRUSR | S_IWUSR | IPC_CREAT;
my $sem = IPC::Semaphore->new(IPC_PRIVATE, 2, $mode) or die "semget: $!";
$sem->setval(0, 1) or die "setval: $!";
$sem->op(0, -1, 0) or die "take: $!";
$sem->op(0, 1, 0) or die "give: $!";
$sem->op(1, -1, IPC_NOWAIT) and die "sem 1 should be busy";
my $msg = IPC::Msg->new(IPC_PRIVATE, $mode) or die "msgget: $!";
$msg->snd(3, "hello") or die "msgsnd: $!";
my $buf;
$msg->rcv($buf, 64) or die "msgrcv: $!";
$msg->rcv($buf, 64, 0, IPC_NOWAIT) and die "queue should be empty";
my $shm = shmget(IPC_PRIVATE, 4096, $mode) // die "shmget: $!";
shmwrite($shm, "data", 0, 4) or die "shmwrite: $!";
shmctl($shm, IPC_RMID, 0) or die "shmctl: $!";
my ($semid, $msqid) = ($sem->id, $msg->id);
$sem->remove;
$msg->remove;
print "$semid $msqid $shm\n";
