#!/usr/bin/env bash
# Creates every closeloop topic and its dead-letter topic; existing topics are left alone,
# so it is safe to run on every start. docker-compose.yml runs it once in the Kafka image;
# against a real cluster:
#   KAFKA_BOOTSTRAP=broker:9092 TOPIC_REPLICATION=3 KAFKA_TOPICS=/path/to/kafka-topics.sh \
#     deploy/kafka/create-topics.sh
# The list must match crates/events (topics::ALL); deploy/validate.sh checks that it does.
set -euo pipefail

bootstrap=${KAFKA_BOOTSTRAP:-kafka:9092}
partitions=${TOPIC_PARTITIONS:-6}
replication=${TOPIC_REPLICATION:-1}
kafka_topics=${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}
# Dead-letter records wait for a person to look at them and replay: keep them 30 days.
dlq_retention_ms=${DLQ_RETENTION_MS:-2592000000}

topics=(
  feedback.raw.v1
  feedback.categorised.v1
  feedback.themes.v1
  actions.v1
  notifications.v1
  privacy.erasure.v1
  customers.preferences.v1
  taxonomy.v1
)
# The current taxonomy: one partition (versions stay in order), compacted (the newest
# record is the state; a consumer reads the topic from its start).
compacted=(taxonomy.v1)

create() {
  "$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
    --topic "$1" --partitions "$partitions" --replication-factor "$replication" "${@:2}"
}

for topic in "${topics[@]}"; do
  if [[ " ${compacted[*]} " == *" $topic "* ]]; then
    "$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
      --topic "$topic" --partitions 1 --replication-factor "$replication" \
      --config cleanup.policy=compact
  else
    create "$topic"
  fi
  # feedback.raw.v1 → feedback.raw.dlq.v1 (closeloop_events::topics::dead_letter_of)
  create "${topic%.v1}.dlq.v1" --config "retention.ms=$dlq_retention_ms"
done

echo "closeloop topics on $bootstrap:"
"$kafka_topics" --bootstrap-server "$bootstrap" --list
