//! A monitor link's linger (`LinkOptions::linger`), on the local RabbitMQ
//! (127.0.0.1:5672, guest/guest): the first message after a quiet spell is
//! handed on at once; while messages come densely, one that arrives within
//! the linger joins the batch being held instead of waking the reader on
//! its own; each is stamped when the link took it; what the link publishes
//! meanwhile, and a close, do not wait for the linger to end.

use std::time::{Duration, Instant};

use orchestrator_lib::plumbing::{Incoming, LinkStatus};
use orchestrator_lib::wire::{Echo, Message};
use orchestrator_lib::{BrokerUrl, Endpoint, Link, LinkOptions, connect};

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Long, so that "not held" and "held" cannot be confused on a loaded machine.
const LINGER: Duration = Duration::from_secs(4);
const WITHIN: Duration = Duration::from_secs(20);

fn broker() -> BrokerUrl {
    BROKER.parse().unwrap()
}

fn echo(seq: u64) -> Message {
    Message::Echo(Echo {
        service: "linger".into(),
        instance: "i".into(),
        monitor: None,
        seq,
        at: None,
    })
}

async fn connected(link: &mut Link) {
    tokio::time::timeout(
        WITHIN,
        link.status
            .wait_for(|status| *status == LinkStatus::Connected),
    )
    .await
    .expect("the link did not connect to the local RabbitMQ in time (is it running?)")
    .expect("the link ended before it connected");
}

async fn next_batch(link: &mut Link) -> Vec<Incoming> {
    tokio::time::timeout(WITHIN, link.inbox.recv_batch())
        .await
        .expect("no batch in time")
        .expect("the link ended")
}

fn seqs(batch: &[Incoming]) -> Vec<u64> {
    batch
        .iter()
        .map(|incoming| match &incoming.message {
            Message::Echo(echo) => echo.seq,
            other => panic!("expected an echo, got {other:?}"),
        })
        .collect()
}

async fn next_batch_seqs(link: &mut Link) -> Vec<u64> {
    seqs(&next_batch(link).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_message_is_not_held_and_dense_ones_cross_as_one_batch() {
    let id = format!("linger-{}", std::process::id());
    let queue = Endpoint::monitor(&id).queue;
    let sender_id = format!("{id}-sender");
    let mut monitor = connect(
        broker(),
        Endpoint::monitor(&id),
        LinkOptions {
            linger: LINGER,
            ..LinkOptions::default()
        },
    );
    // Only its publisher is used: it sends straight to the monitor's queue.
    let mut sender = connect(
        broker(),
        Endpoint::monitor(&sender_id),
        LinkOptions::default(),
    );
    connected(&mut monitor).await;
    connected(&mut sender).await;

    let sent = Instant::now();
    sender.publisher.send_to(&queue, &echo(1)).unwrap();
    assert_eq!(next_batch_seqs(&mut monitor).await, [1]);
    let took = sent.elapsed();
    assert!(
        took < LINGER,
        "a lone message was held {took:?}, as if lingered on"
    );

    // Within a linger of that batch: the stream is dense, so this one is
    // held, and a second sent while it is held joins it.
    sender.publisher.send_to(&queue, &echo(2)).unwrap();
    // The stimulus, not a wait for a condition: the second message must
    // leave while the link holds the first.
    tokio::time::sleep(LINGER / 8).await;
    sender.publisher.send_to(&queue, &echo(3)).unwrap();
    let batch = next_batch(&mut monitor).await;
    assert_eq!(
        seqs(&batch),
        [2, 3],
        "a message sent within the linger did not join the batch held"
    );
    // The held one is timed by when it was taken, not by the linger's end.
    let apart = batch[1].received_at - batch[0].received_at;
    assert!(
        apart >= LINGER / 2,
        "the message taken before the linger was stamped {apart:?} before the one taken after it"
    );

    // Held again; what the monitor publishes meanwhile goes out at once
    // (a ping must not wait behind a batch), and after the linger the
    // held message still comes (no wake-up lost to the linger).
    sender.publisher.send_to(&queue, &echo(4)).unwrap();
    tokio::time::sleep(LINGER / 8).await;
    let sent = Instant::now();
    let sender_queue = Endpoint::monitor(&sender_id).queue;
    monitor
        .publisher
        .send_to(&sender_queue, &echo(100))
        .unwrap();
    assert_eq!(next_batch_seqs(&mut sender).await, [100]);
    let took = sent.elapsed();
    assert!(
        took < LINGER / 2,
        "a message published during a linger waited {took:?} for it to end"
    );
    assert_eq!(next_batch_seqs(&mut monitor).await, [4]);

    // Held once more, and closed meanwhile: the close does not wait the linger out.
    sender.publisher.send_to(&queue, &echo(5)).unwrap();
    tokio::time::sleep(LINGER / 8).await;
    let closing = Instant::now();
    monitor.closer.close().await;
    let took = closing.elapsed();
    assert!(took < LINGER / 2, "a close during a linger took {took:?}");
    sender.closer.close().await;
}
