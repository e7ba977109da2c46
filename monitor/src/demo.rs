//! `monitor --demo`: a few simulated services on the in-process broker, one
//! of which leaves and one of which crashes on a schedule, so a new user sees
//! every kind of transition within the first minute, with no broker at all.

use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_lib::plumbing::MemoryBroker;
use orchestrator_lib::{Endpoint, Faults, Identity, LinkOptions, respond};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Something to do to a simulated service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetCommand {
    /// Stop it as Ctrl+C would: it says goodbye.
    Stop(Identity),
    /// Kill it as SIGKILL would: it just vanishes.
    Crash(Identity),
    Start(Identity),
}

/// One scripted step: wait, then act.
const SCRIPT: [(u64, &str, &str, Action); 4] = [
    (6, "payments", "payments-1", Action::Stop),
    (6, "payments", "payments-1", Action::Start),
    (6, "inventory", "inventory-1", Action::Crash),
    (10, "inventory", "inventory-1", Action::Start),
];

#[derive(Debug, Clone, Copy)]
enum Action {
    Stop,
    Crash,
    Start,
}

/// The simulated services and, optionally, the script that upsets them.
pub fn spawn(
    broker: MemoryBroker,
    scripted: bool,
    shutdown: CancellationToken,
) -> (mpsc::Sender<FleetCommand>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(run(broker, scripted, rx, shutdown));
    (tx, task)
}

fn faults_for(service: &str) -> Faults {
    let ms = Duration::from_millis;
    match service {
        "inventory" => Faults {
            latency: ms(40),
            jitter: ms(60),
            ..Faults::default()
        },
        "search" => Faults {
            latency: ms(5),
            jitter: ms(250),
            ..Faults::default()
        },
        _ => Faults {
            jitter: ms(3),
            ..Faults::default()
        },
    }
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

async fn run(
    broker: MemoryBroker,
    scripted: bool,
    mut commands: mpsc::Receiver<FleetCommand>,
    shutdown: CancellationToken,
) {
    let mut fleet: BTreeMap<Identity, Running> = BTreeMap::new();
    let start = |fleet: &mut BTreeMap<Identity, Running>, id: Identity| {
        if fleet.get(&id).is_some_and(|r| !r.task.is_finished()) {
            return;
        }
        let link = broker.connect(Endpoint::service(&id), LinkOptions::service());
        let stop = shutdown.child_token();
        let faults = faults_for(&id.service);
        let task = tokio::spawn({
            let (id, stop) = (id.clone(), stop.clone());
            async move {
                let _ = respond(link, id, faults, stop).await;
            }
        });
        fleet.insert(id, Running { stop, task });
    };
    for (service, instance) in [
        ("orders", "orders-1"),
        ("orders", "orders-2"),
        ("payments", "payments-1"),
        ("inventory", "inventory-1"),
        ("search", "search-1"),
    ] {
        start(
            &mut fleet,
            Identity::new(service, instance).expect("the demo's names follow the rule"),
        );
    }

    let mut step = 0usize;
    let next_step = tokio::time::sleep(Duration::from_secs(SCRIPT[0].0));
    tokio::pin!(next_step);
    loop {
        let command = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = &mut next_step, if scripted => {
                let (_, service, instance, action) = SCRIPT[step % SCRIPT.len()];
                step += 1;
                let wait = SCRIPT[step % SCRIPT.len()].0;
                next_step.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(wait));
                let id = Identity::new(service, instance).expect("the script's names follow the rule");
                match action {
                    Action::Stop => FleetCommand::Stop(id),
                    Action::Crash => FleetCommand::Crash(id),
                    Action::Start => FleetCommand::Start(id),
                }
            }
            command = commands.recv() => match command {
                Some(command) => command,
                None => break,
            },
        };
        info!(?command, "demo");
        match command {
            FleetCommand::Stop(id) => {
                if let Some(running) = fleet.get(&id) {
                    running.stop.cancel();
                }
            }
            FleetCommand::Crash(id) => {
                if let Some(running) = fleet.get(&id) {
                    // Dropping the responder mid-flight drops its link: no goodbye.
                    running.task.abort();
                }
            }
            FleetCommand::Start(id) => start(&mut fleet, id),
        }
    }
    for running in fleet.into_values() {
        running.stop.cancel();
        let _ = running.task.await;
    }
}
