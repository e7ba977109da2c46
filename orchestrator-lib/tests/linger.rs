//! A monitor link's linger (`LinkOptions::linger`), on the local RabbitMQ
//! (127.0.0.1:5672, guest/guest): a lone message is handed on at once;
//! while messages come densely, one that arrives within the linger joins
//! the batch being held instead of waking the reader on its own.

use std::time::{Duration, Instant};

use orchestrator_lib::wire::Echo;
use orchestrator_lib::{BrokerUrl, Endpoint, Link, LinkOptions, LinkStatus, Message, connect};

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

async fn next_batch_seqs(link: &mut Link) -> Vec<u64> {
    let batch = tokio::time::timeout(WITHIN, link.inbox.recv_batch())
        .await
        .expect("no batch in time")
        .expect("the link ended");
    batch
        .into_iter()
        .map(|incoming| match incoming.message {
            Message::Echo(echo) => echo.seq,
            other => panic!("expected an echo, got {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_message_is_not_held_and_dense_ones_cross_as_one_batch() {
    let id = format!("linger-{}", std::process::id());
    let queue = Endpoint::monitor(&id).queue;
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
        Endpoint::monitor(&format!("{id}-sender")),
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
    assert_eq!(
        next_batch_seqs(&mut monitor).await,
        [2, 3],
        "a message sent within the linger did not join the batch held"
    );

    monitor.closer.close().await;
    sender.closer.close().await;
}
