//! The store's conformance suite: one suite for every backend, in the manner of River's
//! `riverdrivertest`. Each suite function takes a [`harness::Driver`], which makes fresh,
//! empty stores of one backend, and calls `fluid_host::store` directly (no scheduler, no
//! HTTP), holding that backend to exact results: so every backend gives the same ones.
//!
//! The suite covers the claim/finish cycle and its fencing ([`cycle`]), the limits a claim
//! enforces ([`limits`]), the rescue of runs whose host stopped beating ([`rescue`]), runs
//! claimed ahead ([`reservations`]), the pruning of finished runs ([`retention`]), the
//! change feed's plugin checkpoints ([`checkpoints`]) and plugins' tables
//! ([`plugin_tables`]). The entries at the end run all of it once per backend: a new
//! backend is one more entry.

#[path = "../common/mod.rs"]
mod common;

mod checkpoints;
mod cycle;
mod harness;
mod limits;
mod plugin_tables;
mod rescue;
mod reservations;
mod retention;

/// Every suite function, once, as a test of the backend `$db`.
macro_rules! suite {
    ($db:expr) => {
        suite!(@tests $db;
            cycle::claims_take_due_runs_of_known_tasks_highest_priority_first_then_fifo,
            cycle::the_feed_holds_exactly_the_snapshots_a_cycle_wrote,
            cycle::a_finish_from_a_lease_that_lost_the_run_is_fenced_out,
            cycle::cancel_aborts_a_queued_run_and_asks_the_owner_to_stop_a_running_one,
            limits::max_concurrency_counts_the_runs_of_every_host,
            limits::at_the_limit_a_rate_limit_retry_waits_queued_and_silent_then_gives_up,
            limits::concurrent_claims_of_many_hosts_never_pass_max_concurrency,
            limits::a_disabled_task_is_aborted_at_the_door,
            limits::a_group_starts_no_more_runs_than_its_room,
            rescue::runs_of_a_host_whose_heartbeat_lapsed_are_interrupted_and_retried_by_policy,
            rescue::a_removed_host_s_runs_are_rescued_whatever_its_last_heartbeat,
            reservations::a_cycle_reserves_the_next_runs_which_stay_queued_until_their_start_is_recorded,
            reservations::a_start_is_refused_unless_its_host_still_holds_the_reservation,
            reservations::runs_of_limited_tasks_are_never_reserved_nor_passed,
            reservations::the_rescue_and_release_all_return_reservations_to_the_queue,
            reservations::a_run_begun_and_ended_in_one_cycle_shows_its_start_then_its_end,
            reservations::a_run_of_a_task_disabled_since_reserved_is_aborted_even_when_it_ends_in_the_same_cycle,
            reservations::starts_and_ends_handed_in_any_order_are_answered_as_the_feed_holds_them,
            retention::pruning_drops_only_runs_that_ended_before_the_cut,
            checkpoints::a_checkpoint_starts_where_asked_once_then_keeps_its_place,
            checkpoints::a_checkpoint_moves_only_forward_and_only_for_its_lease_holder,
            checkpoints::an_expired_or_released_lease_is_taken_over_and_its_old_holder_fenced_out,
            checkpoints::pruning_drops_only_what_every_checkpoint_has_passed,
            checkpoints::a_plugin_no_host_delivers_to_can_be_forgotten_and_stops_holding_the_feed,
            plugin_tables::a_table_is_made_once_and_held_to_its_schema,
            plugin_tables::each_plugin_has_a_namespace_of_its_own,
            plugin_tables::rows_round_trip_and_queries_filter_order_and_page,
            plugin_tables::quotas_refuse_what_would_pass_them_and_write_nothing,
            plugin_tables::upsert_newer_never_lets_an_older_copy_replace_a_newer_row,
        );
    };
    (@tests $db:expr; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                crate::$module::$name(&crate::harness::Driver($db)).await
            }
        )*
    };
}

mod sqlite {
    suite!(crate::common::Db::Sqlite);
}

mod postgres {
    suite!(crate::common::Db::Postgres);
}
