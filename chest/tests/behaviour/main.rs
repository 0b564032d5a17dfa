//! The behaviour of chest's framework adapters, through real servers and a real HTTP client.
//!
//! One table of cases (`cases.rs`), each a function generic over the framework, is run against
//! every framework: the axum `ChestLayer` and, with the `actix` feature, the actix-web
//! `ChestMiddleware`. Each framework's glue (`axum_app.rs`, `actix_app.rs`) only mounts the shared
//! handlers; the handler bodies and the checks are written once.
//!
//! Run: `cargo test -p chest --features actix,tracing --test behaviour`.

#[cfg(feature = "actix")]
mod actix_app;
mod axum_app;
mod cases;
#[path = "../common/mod.rs"]
mod common;
mod facts;
mod harness;
#[cfg(feature = "tracing")]
mod traced;

/// One `#[tokio::test]` per case of the module `cases` for one framework.
macro_rules! cases_for {
    ($cases:ident, $framework:path => $($case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            crate::$cases::$case::<$framework>().await;
        }
    )*};
}

/// The table: every case of the module `cases`, run against every framework
/// (`<cases>::axum::<case>`, `<cases>::actix::<case>`).
macro_rules! behaviour_table {
    ($cases:ident: $($case:ident),* $(,)?) => {
        mod axum {
            cases_for!($cases, crate::axum_app::Axum => $($case),*);
        }
        #[cfg(feature = "actix")]
        mod actix {
            cases_for!($cases, crate::actix_app::Actix => $($case),*);
        }
    };
}

behaviour_table! { cases:
    get_and_post_write_typed_rows_to_sqlite,
    concurrent_clients_lose_and_duplicate_nothing,
    concurrent_clients_through_batched_lose_and_duplicate_nothing,
    no_tracked_vars_writes_every_variable,
    tracked_vars_select_per_method,
    unset_names_are_skipped,
    nothing_selected_calls_no_chest,
    custom_request_id_generator,
    long_request_id_is_cut_on_a_char_boundary,
    response_header_custom_name_and_off,
    incoming_request_id_only_when_opted_in,
    raise_exceptions_turns_a_failed_write_into_a_bare_500,
    raise_exceptions_off_keeps_the_handler_response,
    bad_variable_names_are_refused_at_set,
    non_finite_floats_are_stored_as_text,
    one_megabyte_text_value_is_stored_exactly,
    written_whatever_the_handler_status,
    free_functions_work_from_nested_code,
    extractor_without_the_middleware_is_a_500_naming_it,
    route_template_under_every_placement,
    inner_service_error_still_writes,
}

/// The automatic request facts.
mod request_facts {
    behaviour_table! { facts:
        facts_give_the_status_and_sizes_of_404_and_500,
        facts_time_and_count_a_slow_streamed_body,
        facts_of_a_body_the_client_left_say_so,
        facts_go_through_the_selection,
        failed_write_keeps_header_facts_and_sends_no_body_facts,
    }
}

/// The tracing bridge.
#[cfg(feature = "tracing")]
mod bridge {
    behaviour_table! { traced:
        span_and_event_fields_become_typed_rows,
        outer_request_span_gives_its_later_fields,
        vars_set_wins_and_selection_applies,
        invalid_field_names_are_skipped_and_counted,
        concurrent_requests_never_mix_fields,
        nothing_is_recorded_outside_a_scope,
    }
}
