// The series the pipeline itself keeps (Prometheus, SYSTEM.md's names): the continual learner's
// (steps, samples, losses, prequential metrics, checkpoints), the user publisher's refreshes and
// due users, gsau_errors_total of both stages, and the publisher module's error counters that
// status() reads. Ingest, the state store and the publisher register the rest themselves.
// Registered once per Pipeline, in the registry it is given. Part of gsau::pipeline's
// implementation: included by pipeline.cc only.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <vector>

#include "gsau/metrics/metrics.h"

namespace gsau::pipeline::internal {

struct Metrics {
  explicit Metrics(prometheus::Registry& r)
      : steps(prometheus::BuildCounter().Name("gsau_learner_steps_total").Help("Training steps").Register(r).Add({})),
        samples_family(prometheus::BuildCounter()
                           .Name("gsau_learner_samples_total")
                           .Help("Samples trained on, by source (fresh or replay)")
                           .Register(r)),
        fresh(samples_family.Add({{"source", "fresh"}})),
        replay(samples_family.Add({{"source", "replay"}})),
        skipped(prometheus::BuildCounter()
                    .Name("gsau_learner_skipped_samples_total")
                    .Help("Fresh samples of failed steps, dropped untrained (their clicks stay in the state and the "
                          "graph); each failed step counts in gsau_errors_total{stage=\"learner\",kind=\"step\"}")
                    .Register(r)
                    .Add({})),
        step_seconds(prometheus::BuildHistogram()
                         .Name("gsau_learner_step_seconds")
                         .Help("Wall time of one training step, the serving snapshot taken after it included")
                         .Register(r)
                         .Add({}, std::vector<double>{0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10})),
        loss_family(prometheus::BuildGauge()
                        .Name("gsau_learner_loss")
                        .Help("Loss of the last step, by term (total, graph_align, graph_unif, seq_align, seq_unif); "
                              "seq_align is the rec variant's cross-entropy over all items, which takes the "
                              "sequential alignment's place; seq_* are the last step's that had sequence samples")
                        .Register(r)),
        loss(loss_family.Add({{"term", "total"}})),
        graph_align(loss_family.Add({{"term", "graph_align"}})),
        graph_unif(loss_family.Add({{"term", "graph_unif"}})),
        seq_align(loss_family.Add({{"term", "seq_align"}})),
        seq_unif(loss_family.Add({{"term", "seq_unif"}})),
        events_observed(prometheus::BuildCounter()
                            .Name("gsau_learner_events_total")
                            .Help("Applied clicks the learner has taken in from ingest (not the start-up catch-up)")
                            .Register(r)
                            .Add({})),
        queued(prometheus::BuildGauge()
                   .Name("gsau_learner_queue_events")
                   .Help("Applied events waiting for the learner")
                   .Register(r)
                   .Add({})),
        pending(prometheus::BuildGauge()
                    .Name("gsau_learner_pending_samples")
                    .Help("Fresh samples taken in and not trained yet (at most the learner's max_pending, 100,000)")
                    .Register(r)
                    .Add({})),
        shed(prometheus::BuildCounter()
                 .Name("gsau_learner_shed_samples_total")
                 .Help("Fresh samples moved to replay untrained because the learner's max_pending were waiting: "
                       "training slower than clicks arrive (ingest is not held back for it)")
                 .Register(r)
                 .Add({})),
        idle(prometheus::BuildGauge()
                 .Name("gsau_learner_idle")
                 .Help("1 while the learner waits for fresh clicks (learner.idle_train_s of training on replay "
                       "alone have gone by), else 0")
                 .Register(r)
                 .Add({})),
        table_family(prometheus::BuildGauge()
                         .Name("gsau_learner_table_rows")
                         .Help("Live rows of the embedding tables, by table (user, item)")
                         .Register(r)),
        user_rows(table_family.Add({{"table", "user"}})),
        item_rows(table_family.Add({{"table", "item"}})),
        preq_count(prometheus::BuildCounter()
                       .Name("gsau_learner_prequential_predictions_total")
                       .Help("Clicks ranked before training on them")
                       .Register(r)
                       .Add({})),
        preq_family(prometheus::BuildGauge()
                        .Name("gsau_learner_online_metric")
                        .Help("Prequential figures over the last window with clicks (metric=recall|ndcg, k=10|20)")
                        .Register(r)),
        recall10(preq_family.Add({{"metric", "recall"}, {"k", "10"}})),
        recall20(preq_family.Add({{"metric", "recall"}, {"k", "20"}})),
        ndcg10(preq_family.Add({{"metric", "ndcg"}, {"k", "10"}})),
        ndcg20(preq_family.Add({{"metric", "ndcg"}, {"k", "20"}})),
        pop_family(prometheus::BuildGauge()
                       .Name("gsau_learner_online_popularity_metric")
                       .Help("The prequential figures of a most-popular ranking on the same clicks, the baseline "
                             "(metric=recall|ndcg, k=10|20)")
                       .Register(r)),
        pop_recall10(pop_family.Add({{"metric", "recall"}, {"k", "10"}})),
        pop_recall20(pop_family.Add({{"metric", "recall"}, {"k", "20"}})),
        pop_ndcg10(pop_family.Add({{"metric", "ndcg"}, {"k", "10"}})),
        pop_ndcg20(pop_family.Add({{"metric", "ndcg"}, {"k", "20"}})),
        checkpoints(prometheus::BuildCounter()
                        .Name("gsau_learner_checkpoints_total")
                        .Help("Checkpoints written")
                        .Register(r)
                        .Add({})),
        checkpoint_seconds(prometheus::BuildHistogram()
                               .Name("gsau_learner_checkpoint_seconds")
                               .Help("Time to write one checkpoint (model and state)")
                               .Register(r)
                               .Add({}, std::vector<double>{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30})),
        learner_errors(metrics::ErrorCounter(r, "learner", "internal")),
        step_errors(metrics::ErrorCounter(r, "learner", "step")),
        serving_errors(metrics::ErrorCounter(r, "learner", "serving_snapshot")),
        checkpoint_errors(metrics::ErrorCounter(r, "learner", "checkpoint")),
        prequential_errors(metrics::ErrorCounter(r, "learner", "prequential")),
        publish_errors(metrics::ErrorCounter(r, "publisher", "publish")),
        delivery_errors(metrics::ErrorCounter(r, "publisher", "delivery")),
        produce_errors(metrics::ErrorCounter(r, "publisher", "produce")),
        broker_errors(metrics::ErrorCounter(r, "publisher", "broker")),
        refresh_family(prometheus::BuildCounter()
                           .Name("gsau_publisher_user_refreshes_total")
                           .Help("Passes publishing every user of the state again, counted as they are asked "
                                 "for (one asked while another is under way extends it), by reason: start (an "
                                 "empty user topic, no checkpoint, a rollback, a change feed gap), trained (a cold "
                                 "start's model has trained over the history), idle (the learner went idle after "
                                 "replay alone), scheduled (publisher.user_refresh_s of training)")
                           .Register(r)),
        refresh_start(refresh_family.Add({{"reason", "start"}})),
        refresh_trained(refresh_family.Add({{"reason", "trained"}})),
        refresh_idle(refresh_family.Add({{"reason", "idle"}})),
        refresh_scheduled(refresh_family.Add({{"reason", "scheduled"}})),
        users_due(prometheus::BuildGauge()
                      .Name("gsau_publisher_users_due")
                      .Help("Users whose record is owed, after the last flush: clicked and not published yet "
                            "(waiting for an item, or failed), marked again by a start-up or a republish, and "
                            "those of a refresh under way not published yet")
                      .Register(r)
                      .Add({})) {}

  prometheus::Counter& steps;
  prometheus::Family<prometheus::Counter>& samples_family;
  prometheus::Counter& fresh;
  prometheus::Counter& replay;
  prometheus::Counter& skipped;
  prometheus::Histogram& step_seconds;
  prometheus::Family<prometheus::Gauge>& loss_family;
  prometheus::Gauge &loss, &graph_align, &graph_unif, &seq_align, &seq_unif;
  prometheus::Counter& events_observed;
  prometheus::Gauge& queued;
  prometheus::Gauge& pending;
  prometheus::Counter& shed;
  prometheus::Gauge& idle;
  prometheus::Family<prometheus::Gauge>& table_family;
  prometheus::Gauge &user_rows, &item_rows;
  prometheus::Counter& preq_count;
  prometheus::Family<prometheus::Gauge>& preq_family;
  prometheus::Gauge &recall10, &recall20, &ndcg10, &ndcg20;
  prometheus::Family<prometheus::Gauge>& pop_family;
  prometheus::Gauge &pop_recall10, &pop_recall20, &pop_ndcg10, &pop_ndcg20;
  prometheus::Counter& checkpoints;
  prometheus::Histogram& checkpoint_seconds;
  prometheus::Counter& learner_errors;
  prometheus::Counter& step_errors;
  prometheus::Counter& serving_errors;
  prometheus::Counter& checkpoint_errors;
  prometheus::Counter& prequential_errors;
  prometheus::Counter& publish_errors;
  // The publisher's (counted by KafkaPublisher), read for the status.
  prometheus::Counter& delivery_errors;
  prometheus::Counter& produce_errors;
  prometheus::Counter& broker_errors;
  prometheus::Family<prometheus::Counter>& refresh_family;
  prometheus::Counter &refresh_start, &refresh_trained, &refresh_idle, &refresh_scheduled;
  prometheus::Gauge& users_due;
};

}  // namespace gsau::pipeline::internal
