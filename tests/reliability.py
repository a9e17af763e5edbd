"""The README's reliability table, as pytest markers (issue 16 item 8).

Each group lists the tests (a test function, or one parametrized case with its [id]) that feed
latentrm a bad input, a fault or an attack of that kind and check how it is handled. Collection
marks them ``rel_<group>``, so the README's counts are re-derived with

    python -m pytest --collect-only -q -m rel_cache      # "N/M tests collected (... deselected)"

(``-m`` replaces the default ``-m 'not slow'``: slow tests are counted too). A listed name that
matches no test of a collected file is a collection error, so the table cannot silently rot.
"""

from __future__ import annotations

import pytest

GROUPS: dict[str, tuple[str, list[str]]] = {
    "data": (
        "training data input (latentrm run / embed / latentrm.fit)",
        [
            "tests/data/test_readers.py::test_csv_error_names_the_line_its_record_starts_on",
            "tests/data/test_readers.py::test_deeply_nested_json_is_one_data_error_naming_the_line",
            "tests/data/test_readers.py::test_folder_reads_every_data_file_each_named_in_errors",
            "tests/data/test_readers.py::test_folder_without_data_files_names_what_it_holds",
            "tests/data/test_readers.py::test_hub_failure_is_one_data_error",
            "tests/data/test_readers.py::test_huge_csv_cell_is_read_and_cut_like_jsonl",
            "tests/data/test_readers.py::test_malformed_json_line",
            "tests/data/test_readers.py::test_missing_local_file_is_not_sent_to_the_hub",
            "tests/data/test_readers.py::test_non_utf8_bytes_name_the_line",
            "tests/data/test_readers.py::test_non_standard_json_literals_are_refused_naming_line_and_field",
            "tests/data/test_readers.py::test_unset_data_path_says_which_key",
            "tests/data/test_formats.py::test_candidates_gold_not_a_number",
            "tests/data/test_formats.py::test_conversational_errors_name_the_field",
            "tests/data/test_formats.py::test_empty_file",
            "tests/data/test_formats.py::test_empty_prompt",
            "tests/data/test_formats.py::test_extra_columns_are_not_taken_for_misspellings",
            "tests/data/test_formats.py::test_forced_format_mismatch_is_an_error",
            "tests/data/test_formats.py::test_hh_dialogue_without_assistant_turn",
            "tests/data/test_formats.py::test_hh_pairs_must_share_the_prompt",
            "tests/data/test_formats.py::test_hh_prompt_must_end_with_a_human_turn",
            "tests/data/test_formats.py::test_load_candidates_rejects_a_pairs_file",
            "tests/data/test_formats.py::test_missing_key_without_a_near_miss_lists_the_keys",
            "tests/data/test_formats.py::test_misspelled_key_names_the_nearest",
            "tests/data/test_formats.py::test_mixed_formats_name_the_first_differing_line",
            "tests/data/test_formats.py::test_tldr_bad_choice",
            "tests/data/test_load.py::test_duplicate_ids",
            "tests/data/test_load.py::test_empty_response_kept_by_default_error_when_disallowed",
            "tests/data/test_load.py::test_identical_pairs_are_dropped_counted_and_warned",
            "tests/data/test_load.py::test_megabyte_response_is_cut_keeping_the_start",
            "tests/data/test_messages.py::test_deeply_nested_json_text_is_a_data_error_naming_where",
            "tests/data/test_messages.py::test_errors_show_a_short_repr_even_of_deeply_nested_values",
            "tests/data/test_splits.py::test_split_indices_errors_and_the_more_seeds_than_data_warning",
            "tests/recipes/test_fit.py::test_bad_margins_and_bad_data_are_one_line",
            "tests/recipes/test_prepare.py::test_candidates_data_with_another_bon_file_is_refused",
            "tests/data/test_readers.py::test_a_gzip_bomb_is_refused_naming_the_file",
            "tests/data/test_readers.py::test_blank_line_runs_cost_no_memory_per_line",
            "tests/data/test_readers.py::test_a_dictionary_encoded_parquet_bomb_is_refused_before_it_is_materialised",
            "tests/data/test_readers.py::test_duplicate_json_keys_are_refused_not_last_wins",
            "tests/data/test_readers.py::test_duplicate_csv_columns_are_refused",
            "tests/data/test_readers.py::test_a_lone_surrogate_is_one_line_naming_line_and_field",
            "tests/data/test_load.py::test_too_many_candidates_in_one_set_are_refused_before_binarising",
            "tests/data/test_load.py::test_a_candidates_file_that_yields_no_pairs_is_an_error",
            "tests/data/test_load.py::test_exact_duplicate_records_are_kept_and_warned_with_their_lines",
            "tests/data/test_fuzz.py::test_random_bytes_in_any_file_kind",
            "tests/data/test_fuzz.py::test_random_json_records",
        ],
    ),
    "serving": (
        "score / bon input and output, TRL reward function calls",
        [
            "tests/data/test_readers.py::test_read_rows_errors",
            "tests/data/test_writers.py::test_json_output_is_strict_and_names_the_row",
            "tests/data/test_writers.py::test_output_path_is_checked_before_work",
            "tests/cli/test_cli.py::test_score_and_bon_check_out_before_reading_anything",
            "tests/recipes/test_score.py::test_bon_gold_of_the_wrong_type_is_one_line",
            "tests/recipes/test_score.py::test_bon_without_a_candidates_column_names_the_file_and_line",
            "tests/recipes/test_score.py::test_deeply_nested_json_in_a_cell_is_one_line",
            "tests/recipes/test_score.py::test_score_rows_errors_name_file_line_field",
            "tests/test_serve.py::test_best_of_n_errors_name_the_prompt_and_candidate",
            "tests/test_serve.py::test_cli_bon_error_names_the_input_file_and_the_real_line",
            "tests/test_serve.py::test_cli_score_error_is_one_line",
            "tests/test_serve.py::test_trl_reward_func_errors_name_the_item",
            "tests/data/test_messages.py::test_serving_refuses_the_prompts_training_refuses_with_the_same_message",
            "tests/data/test_messages.py::test_a_completion_must_end_with_its_assistant_reply",
            "tests/data/test_fuzz.py::test_random_values_through_the_message_parser",
            "tests/test_serve.py::test_one_string_is_refused_where_a_list_is_expected_never_iterated",
            "tests/test_serve.py::test_a_full_disk_while_writing_scores_names_the_file_and_promises_no_resume",
        ],
    ),
    "model": (
        "model folders (score/bon --model, RewardModel.load, from_pretrained)",
        [
            "tests/test_model.py::test_corrupt_model_folder_is_one_model_error_naming_the_file",
            "tests/test_model.py::test_from_pretrained_errors_are_one_line",
            "tests/test_model.py::test_load_errors_are_latentrm_errors",
            "tests/test_model.py::test_a_model_that_scores_nan_is_refused_at_scoring_time",
            "tests/hub/test_head.py::test_absurd_sizes_are_refused_before_anything_is_allocated",
            "tests/hub/test_head.py::test_corrupt_head_is_one_model_error_naming_the_file",
            "tests/hub/test_head.py::test_ensemble_member_sizes_are_checked_against_the_file",
            "tests/hub/test_head.py::test_head_that_would_score_nan_is_refused_at_load",
            "tests/test_serve.py::test_cli_refuses_a_model_that_scores_nan_and_writes_nothing",
            "tests/test_serve.py::test_cli_refuses_nan_weights_at_load",
            "tests/test_serve.py::test_nan_scores_are_refused_never_ranked",
            "tests/hub/test_folder.py::test_json_files_are_size_capped",
            "tests/hub/test_folder.py::test_an_edited_embed_config_is_refused_when_latentrm_json_records_training",
            "tests/hub/test_folder.py::test_a_malformed_identity_record_is_one_line",
            "tests/hub/test_folder.py::test_embed_overrides_must_be_a_mapping",
            "tests/hub/test_export.py::test_every_exported_file_honours_the_umask",
        ],
    ),
    "cache": (
        "embedding caches and augmented sets (train CACHE, synth, export)",
        [
            "tests/embed/test_views.py::test_a_corrupt_chunk_file_is_a_cache_error_naming_it",
            "tests/embed/test_store.py::test_a_corrupt_store_json_is_blamed_not_the_chunks",
            "tests/embed/test_store.py::test_corrupt_descriptions_are_one_line_errors_saying_delete",
            "tests/embed/test_views.py::test_mismatching_cache_names_the_field",
            "tests/embed/test_local.py::test_embedder_argument_must_match_the_request",
            "tests/embed/test_scale.py::test_a_shard_refuses_a_cache_made_differently",
            "tests/test_pairs.py::test_load_augmented_refuses_a_damaged_set_naming_file_and_field",
            "tests/test_pairs.py::test_load_augmented_unreadable_files_are_one_data_error",
            "tests/test_parquet.py::test_cli_export_names_the_damaged_input_and_writes_nothing",
            "tests/embed/test_store.py::test_a_chunk_description_may_only_name_a_file_beside_it",
            "tests/embed/test_store.py::test_a_huge_sparse_chunk_is_refused_by_its_size_before_it_is_read",
            "tests/embed/test_store.py::test_a_malformed_view_is_one_line_naming_it",
            "tests/cli/test_cli.py::test_embed_reads_a_read_only_cache_when_everything_is_cached",
        ],
    ),
    "runs": (
        "run and experiment folders",
        [
            "tests/recipes/test_run.py::test_out_dir_that_is_not_a_run_folder_is_refused",
            "tests/recipes/test_run.py::test_rerun_replaces_the_run_and_keeps_what_is_not_its_own",
            "tests/recipes/test_experiment.py::test_experiment_never_resumes_another_configs_rows",
            "tests/test_io.py::test_output_dir_checks_name_the_path",
            "tests/test_io.py::test_read_only_parent_is_refused",
            "tests/recipes/test_outdir.py::test_a_symlinked_out_dir_is_written_where_it_points",
        ],
    ),
    "config": (
        "config values (YAML files and key=value overrides)",
        [
            "tests/config/test_loading.py::test_bad_values_name_the_key",
            "tests/config/test_loading.py::test_bounds_hold_for_a_section_built_alone_and_name_real_keys",
            "tests/config/test_loading.py::test_duplicate_yaml_keys_are_an_error",
            "tests/config/test_loading.py::test_non_finite_floats_name_the_key",
            "tests/config/test_loading.py::test_out_of_bounds_values_name_the_key",
            "tests/config/test_loading.py::test_yaml_round_trip_and_file_errors",
            "tests/config/test_run.py::test_ratio_must_be_a_positive_int",
            "tests/config/test_run.py::test_run_config_checks_name_the_key",
            "tests/config/test_run.py::test_variants_name_a_method_and_changes_checked_like_overrides",
            "tests/embed/test_embedder.py::test_bad_config_values_are_config_errors",
            "tests/recipes/test_experiment.py::test_sweep_value_errors_name_the_key",
            "tests/augment/test_synth.py::test_lens_bad_ratio",
            "tests/augment/test_synth.py::test_lens_top_k_config_checks",
            "tests/augment/test_teacher.py::test_teacher_options_are_checked",
            "tests/augment/test_vae.py::test_w2_squared_with_too_large_gamma_is_refused_before_training",
            # issue 23: choices, rules between keys and upper bounds at load; files and overrides
            "tests/config/test_bounds.py::test_every_choice_is_checked_when_the_config_is_built",
            "tests/config/test_bounds.py::test_choices_of_a_tuple_key_and_of_a_device",
            "tests/config/test_bounds.py::test_a_section_built_alone_or_directly_is_checked_too",
            "tests/config/test_bounds.py::test_rules_between_keys_are_checked_at_load",
            "tests/config/test_bounds.py::test_drifted_bounds_have_one_source",
            "tests/config/test_bounds.py::test_sizes_have_upper_bounds",
            "tests/config/test_bounds.py::test_mlp_depth_is_bounded",
            "tests/config/test_loading.py::test_unreadable_config_files_are_one_line",
            "tests/config/test_loading.py::test_overrides_that_were_sent_on_mangled_are_refused",
            "tests/config/test_run.py::test_variants_and_sweeps_are_checked_whole_at_load",
            "tests/config/test_fuzz.py::test_random_bytes_as_a_config_file",
            "tests/config/test_fuzz.py::test_random_mappings_as_a_config_file",
            "tests/config/test_fuzz.py::test_random_overrides",
            "tests/config/test_fuzz.py::test_odd_yaml_documents",
        ],
    ),
    "cli": (
        "CLI arguments",
        [
            "tests/cli/test_cli.py::test_bad_arguments_are_one_line",
            "tests/cli/test_cli.py::test_cli_prints_one_line_error_without_traceback",
            "tests/cli/test_cli.py::test_closed_stdout_is_not_a_traceback",
            "tests/cli/test_cli.py::test_data_path_has_no_repository_default",
            "tests/cli/test_cli.py::test_embed_has_no_model_flag",
            "tests/cli/test_cli.py::test_out_that_is_an_existing_file_is_one_line",
            "tests/cli/test_cli.py::test_permission_errors_are_one_line_other_os_errors_are_not",
            "tests/test_parquet.py::test_cli_export_refuses_other_suffixes_before_reading",
            "tests/cli/test_cli.py::test_config_and_run_refuse_bad_choices_before_any_embedding",
            "tests/cli/test_cli.py::test_a_flag_and_an_override_that_disagree_are_refused",
            "tests/cli/test_cli.py::test_a_cache_dir_that_is_a_file_is_one_line",
            "tests/cli/test_cli.py::test_thread_counts_are_capped_before_torch_sees_them",
        ],
    ),
    "api": (
        "Python API arguments (NaN embeddings, unknown names, misuse)",
        [
            "tests/augment/test_baselines.py::test_sampling_baselines_refuse_nan_embeddings",
            "tests/test_evaluate.py::test_pairwise_accuracy_rejects_mismatch_and_nan",
            "tests/head/test_estimator.py::test_params_round_trip_and_unknown_names_are_refused",
            "tests/head/test_reward.py::test_nan_embedding_raises_training_error",
            "tests/augment/test_vae.py::test_fitter_rejects_nan_and_bad_config",
            "tests/text/test_reward_model.py::test_bad_mode_and_unfitted_score",
            "tests/recipes/test_fit.py::test_overrides_given_as_one_string_are_refused_not_split_into_characters",
        ],
    ),
    "faults": (
        "faults survived",
        [
            "tests/embed/test_local.py::test_sigkill_mid_run_then_rerun_equals_uninterrupted",
            "tests/embed/test_local.py::test_partial_run_then_resume_equals_uninterrupted",
            "tests/embed/test_local.py::test_resume_computes_only_missing_chunks",
            "tests/recipes/test_experiment.py::test_killed_experiment_resumes_its_finished_seeds",
            "tests/recipes/test_experiment.py::test_failed_experiment_leaves_the_earlier_one_untouched",
            "tests/recipes/test_run.py::test_failed_run_leaves_the_earlier_run_untouched",
            "tests/recipes/test_run.py::test_crash_while_saving_heads_leaves_no_mixed_folder",
            "tests/recipes/test_run.py::test_crash_in_a_fresh_out_dir_leaves_nothing",
            "tests/embed/test_store.py::test_writers_with_other_chunk_sizes_share_a_store_safely",
            "tests/embed/test_scale.py::test_two_shard_processes_equal_one_process",
            "tests/cli/test_cli.py::test_disk_full_while_embedding_says_what_is_kept_and_rerun_resumes",
            "tests/test_io.py::test_a_failed_write_leaves_neither_file_nor_temp",
            "tests/embed/test_views.py::test_a_flipped_byte_is_detected_on_read_and_recomputed",
            "tests/embed/test_views.py::test_verify_lists_every_bad_chunk_and_sets_them_aside",
        ],
    ),
    "security": (
        "security rules",
        [
            "tests/hub/test_head.py::test_corrupt_head_is_one_model_error_naming_the_file[pickle]",
            "tests/embed/test_store.py::test_a_pickled_chunk_is_never_unpickled_even_with_a_matching_checksum",
            "tests/config/test_loading.py::test_yaml_python_tags_are_refused_in_one_line_naming_the_line",
            "tests/test_model.py::test_a_model_folder_cannot_turn_on_remote_code",
            "tests/test_model.py::test_saved_config_never_holds_trust_remote_code_and_a_file_asking_is_ignored",
            "tests/test_model.py::test_the_caller_can_opt_in_to_remote_code_with_a_warning",
            "tests/test_model.py::test_a_bare_head_never_reads_the_run_config_two_levels_up",
            "tests/test_model.py::test_load_refuses_an_embedder_whose_files_differ_from_the_recorded_ones",
            "tests/test_model.py::test_a_hub_embedder_is_pinned_to_its_commit",
            "tests/embed/test_models.py::test_model_hashes_follow_rewrites_that_keep_size_and_mtime",
            "tests/hub/test_folder.py::test_model_folder_files_must_be_regular_files_inside_the_folder",
            "tests/hub/test_folder.py::test_links_inside_the_folder_and_a_hub_cache_snapshot_load",
            "tests/embed/test_embedder.py::test_a_pickled_embedder_checkpoint_is_one_line_and_never_unpickled",
            "tests/embed/test_embedder.py::test_a_chat_template_escaping_its_sandbox_is_one_line",
            "tests/config/test_run.py::test_a_variant_name_that_could_leave_the_folder_is_refused_at_load",
            "tests/cli/test_cli.py::test_a_variant_name_cannot_make_run_write_outside_out_dir",
            "tests/recipes/test_outdir.py::test_a_folder_made_from_a_name_stays_inside_its_parent",
            "tests/config/test_loading.py::test_yaml_alias_bombs_are_refused_before_they_expand",
        ],
    ),
}


def _matches(nodeid: str, name: str) -> bool:
    return nodeid == name or (nodeid.startswith(name + "[") and "[" not in name)


def pytest_configure(config: pytest.Config) -> None:
    for group, (what, _) in GROUPS.items():
        config.addinivalue_line("markers", f"rel_{group}: README reliability table: {what}")


@pytest.hookimpl(tryfirst=True)  # before -m / -k deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules = {item.nodeid.split("::", 1)[0]: getattr(item, "module", None) for item in items}
    for group, (_, names) in GROUPS.items():
        for name in names:
            path, func = name.split("::", 1)
            module = modules.get(path)
            if module is not None and not hasattr(module, func.split("[", 1)[0]):
                raise pytest.UsageError(
                    f"tests/reliability.py: {name} (group {group}) names no "
                    "test; update it and the README's reliability table"
                )
            for item in items:
                if _matches(item.nodeid, name):
                    item.add_marker(f"rel_{group}")
