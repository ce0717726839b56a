//! The start-up check of the writer's topics: they exist and can take messages, or they are
//! created (with `create_topics`), or the writer does not start.

use std::time::{Duration, Instant};

use feeder_core::WriteError;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::ClientConfig;

use super::client::{create, FeederContext};
use super::config::{CreateTopics, KafkaOptions};

/// How often the topics are looked up while waiting for created ones to get their leaders.
const USABLE_POLL: Duration = Duration::from_millis(200);

/// What the cluster says of one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TopicState {
    pub name: String,
    /// The topic-level error of the metadata answer.
    pub error: Option<RDKafkaErrorCode>,
    pub partitions: usize,
    /// Partitions without a leader (or with an error): not writable yet.
    pub unready: usize,
}

impl TopicState {
    fn missing(&self) -> bool {
        self.error == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    }

    fn usable(&self) -> bool {
        self.error.is_none() && self.partitions > 0 && self.unready == 0
    }
}

/// A topic the writer needs does not exist, and it may not create it.
#[derive(Debug, thiserror::Error)]
#[error("kafka topic {topic:?} does not exist")]
pub struct MissingTopic {
    /// The topic.
    pub topic: String,
}

/// What became of the check.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Plan {
    /// Every topic is there.
    Ready,
    /// These are missing and are to be created.
    Create(Vec<String>),
}

/// Decides from the cluster's answer what to do about `wanted`; pure, so that the cases
/// are tested without a broker.
pub(super) fn plan(
    wanted: &[&str],
    known: &[TopicState],
    create_topics: Option<CreateTopics>,
    brokers: &str,
) -> Result<Plan, WriteError> {
    let mut missing = Vec::new();
    for &topic in wanted {
        match known.iter().find(|t| t.name == topic) {
            Some(t) if t.missing() => missing.push(topic.to_string()),
            None => missing.push(topic.to_string()),
            Some(TopicState {
                error: Some(code), ..
            }) => {
                return Err(WriteError::terminal(
                    format!("the kafka brokers at {brokers} refuse to describe topic {topic:?}"),
                    rdkafka::error::KafkaError::MetadataFetch(*code),
                ))
            }
            Some(_) => {}
        }
    }
    match (missing.first(), create_topics) {
        (None, _) => Ok(Plan::Ready),
        (Some(_), Some(_)) => Ok(Plan::Create(missing)),
        (Some(topic), None) => Err(WriteError::terminal(
            format!(
                "kafka topic {topic:?} does not exist on {brokers}: create it, or set the \
                 writer's option create_topics: {{ partitions, replication_factor }} to let \
                 the writer create it"
            ),
            MissingTopic {
                topic: topic.clone(),
            },
        )),
    }
}

/// Every topic the cluster lists, within `timeout`.
async fn describe(
    producer: &FutureProducer<FeederContext>,
    context: &FeederContext,
    timeout: Duration,
    brokers: &str,
) -> Result<Vec<TopicState>, WriteError> {
    let probe = producer.clone();
    let answer = tokio::task::spawn_blocking(move || {
        probe.client().fetch_metadata(None, timeout).map(|m| {
            m.topics()
                .iter()
                .map(|t| TopicState {
                    name: t.name().to_string(),
                    error: t.error().map(RDKafkaErrorCode::from),
                    partitions: t.partitions().len(),
                    unready: t
                        .partitions()
                        .iter()
                        .filter(|p| p.leader() < 0 || p.error().is_some())
                        .count(),
                })
                .collect::<Vec<_>>()
        })
    })
    .await
    .map_err(|e| WriteError::terminal("the kafka start-up check failed", e))?;
    answer.map_err(|e| {
        let why = context
            .last_error()
            .map(|last| format!(" (last client error: {last})"))
            .unwrap_or_default();
        WriteError::terminal(
            format!("the kafka brokers at {brokers} did not answer a metadata request within {timeout:?}{why}"),
            e,
        )
    })
}

/// Checks that the writer's topics exist, creating the missing ones with `create_topics`,
/// and waits until each can take messages; all within `connect_timeout` per step.
pub(super) async fn ensure(
    producer: &FutureProducer<FeederContext>,
    context: &FeederContext,
    config: &ClientConfig,
    options: &KafkaOptions,
) -> Result<(), WriteError> {
    let brokers = options.brokers.join(",");
    let timeout = options.connect_timeout;
    let mut wanted = vec![options.topic.as_str()];
    if options.candles_topic != options.topic {
        wanted.push(options.candles_topic.as_str());
    }
    let known = describe(producer, context, timeout, &brokers).await?;
    let missing = match plan(&wanted, &known, options.create_topics, &brokers)? {
        Plan::Ready => return Ok(()),
        Plan::Create(missing) => missing,
    };
    let Some(spec) = options.create_topics else {
        return Ok(());
    };
    create_missing(config, context, &missing, spec, timeout).await?;
    // A created topic is writable once every partition has a leader.
    let deadline = Instant::now() + timeout;
    loop {
        let known = describe(producer, context, timeout, &brokers).await?;
        let unready: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|w| !known.iter().any(|t| t.name == *w && t.usable()))
            .collect();
        let Some(first) = unready.first() else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(WriteError::terminal(
                format!(
                    "kafka topic {first:?} was created on {brokers} but has no leader for \
                     every partition after {timeout:?}"
                ),
                MissingTopic {
                    topic: first.to_string(),
                },
            ));
        }
        tokio::time::sleep(USABLE_POLL).await;
    }
}

async fn create_missing(
    config: &ClientConfig,
    context: &FeederContext,
    missing: &[String],
    spec: CreateTopics,
    timeout: Duration,
) -> Result<(), WriteError> {
    let admin: AdminClient<FeederContext> = create(config, context)?;
    let new: Vec<NewTopic> = missing
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                spec.partitions,
                TopicReplication::Fixed(spec.replication_factor),
            )
        })
        .collect();
    let admin_options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let results = admin.create_topics(&new, &admin_options).await;
    // Dropping an admin client joins its thread.
    let _ = tokio::task::spawn_blocking(move || drop(admin)).await;
    let results = results.map_err(|e| {
        WriteError::terminal(format!("cannot create the kafka topics {missing:?}"), e)
    })?;
    for r in results {
        match r {
            Ok(topic) => tracing::info!(
                topic = %topic,
                partitions = spec.partitions,
                replication_factor = spec.replication_factor,
                "created kafka topic"
            ),
            // Another writer got there first.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(WriteError::terminal(
                    format!(
                        "cannot create kafka topic {topic:?} with {} partitions of {} replicas",
                        spec.partitions, spec.replication_factor
                    ),
                    rdkafka::error::KafkaError::AdminOp(code),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str, error: Option<RDKafkaErrorCode>) -> TopicState {
        TopicState {
            name: name.into(),
            error,
            partitions: if error.is_some() { 0 } else { 3 },
            unready: 0,
        }
    }

    #[test]
    fn a_missing_topic_without_create_topics_is_refused_naming_topic_and_option() {
        let known = [state("trades", None)];
        let e = plan(&["trades", "candles"], &known, None, "k:9092").unwrap_err();
        assert!(!e.is_retriable());
        let text = e.to_string();
        assert!(text.contains("\"candles\""), "{text}");
        assert!(text.contains("create_topics"), "{text}");
        // A broker may also answer for the topic with "unknown".
        let known = [
            state("trades", Some(RDKafkaErrorCode::UnknownTopicOrPartition)),
            state("candles", None),
        ];
        let text = plan(&["trades", "candles"], &known, None, "k:9092")
            .unwrap_err()
            .to_string();
        assert!(text.contains("\"trades\""), "{text}");
    }

    #[test]
    fn missing_topics_are_created_with_create_topics() {
        let spec = Some(CreateTopics {
            partitions: 3,
            replication_factor: 1,
        });
        let known = [state("trades", None)];
        assert_eq!(
            plan(&["trades", "candles"], &known, spec, "k").unwrap(),
            Plan::Create(vec!["candles".into()])
        );
        let known = [state("trades", None), state("candles", None)];
        assert_eq!(
            plan(&["trades", "candles"], &known, spec, "k").unwrap(),
            Plan::Ready
        );
        assert_eq!(
            plan(&["trades", "candles"], &known, None, "k").unwrap(),
            Plan::Ready
        );
    }

    #[test]
    fn a_topic_the_broker_will_not_describe_is_not_created() {
        let spec = Some(CreateTopics {
            partitions: 1,
            replication_factor: 1,
        });
        let known = [state(
            "trades",
            Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        )];
        let e = plan(&["trades"], &known, spec, "k").unwrap_err();
        assert!(e.to_string().contains("refuse to describe"), "{e}");
    }
}
