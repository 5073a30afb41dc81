//! `rank` (contract 0.2.2): answers in columns, with `not-now` as positions, checked as
//! strictly as `prioritize`'s variants; and a module built against 0.2.0 beside it still
//! answers through `prioritize`.

use super::*;

/// `testdata/rank.wat` with the prelude at 0.2.2 and `splices` (marker, replacement) applied.
fn rank_component(splices: &[(&str, &str)]) -> Vec<u8> {
    let mut text = core_wat("rank").replace("lifecycle@0.2.0", "lifecycle@0.2.2");
    for (marker, replacement) in splices {
        assert!(text.contains(marker), "rank.wat has {marker}");
        text = text.replace(marker, replacement);
    }
    componentize(text.as_bytes(), Some("prioritizer")).expect("rank.wat encodes")
}

#[test]
fn a_ranking_module_answers_scores_and_holds_back_the_positions_it_names() {
    let module = load("rank", rank_component(&[])).expect("loads");
    assert_eq!(module.contract, "0.2.2");
    assert_eq!(module.interfaces, vec![Interface::Prioritize, Interface::Lifecycle, Interface::Explain]);
    assert_eq!(module.exported_name(Interface::Prioritize), "rank");
    assert_eq!(module.columns.names(), vec!["stars"]);
    assert_eq!(module.explain_priority(&repos(&[1])[0], now()).expect("explains"), "ranked by stars");
    let answers = module.prioritize(&repos(&[5, 0, 50, 0]), now()).expect("answers");
    assert_eq!(answers, vec![Priority::Score(5.0), Priority::NotNow, Priority::Score(50.0), Priority::NotNow]);
}

#[test]
fn a_held_back_repo_may_carry_any_score_and_the_others_must_be_finite() {
    let module =
        load("rank-nan", rank_component(&[("(f64.const 0 (; HELD_SCORE ;))", "(f64.const nan)")])).expect("loads");
    let answers = module.prioritize(&repos(&[3, 0]), now()).expect("a NaN under not-now is ignored");
    assert_eq!(answers, vec![Priority::Score(3.0), Priority::NotNow]);

    // The same NaN on a repo it does not hold back is refused, naming the repo.
    let module = load(
        "rank-nan-served",
        rank_component(&[
            ("(f64.const 0 (; HELD_SCORE ;))", "(f64.const nan)"),
            ("(i32.const 0 (; NOT_NOW_SHIFT ;))", "(i32.const 1)"),
        ]),
    )
    .expect("loads");
    let error = module.prioritize(&repos(&[0, 0, 7]), now()).unwrap_err();
    assert!(matches!(&error, CallFailure::BadAnswer(m) if m.contains("repo1") && m.contains("not finite")), "{error}");
}

#[test]
fn a_ranking_of_the_wrong_length_or_naming_positions_past_the_batch_is_refused() {
    let extra = rank_component(&[("(i32.const 0 (; SCORES_EXTRA ;))", "(i32.const 1)")]);
    let module = load("rank-long", extra).expect("loads");
    let error = module.prioritize(&repos(&[1, 2, 3]), now()).unwrap_err();
    assert!(
        matches!(&error, CallFailure::BadAnswer(m) if m.contains("rank returned 4 answers for 3 inputs")),
        "{error}"
    );

    let shifted = rank_component(&[("(i32.const 0 (; NOT_NOW_SHIFT ;))", "(i32.const 1)")]);
    let module = load("rank-past-end", shifted).expect("loads");
    let error = module.prioritize(&repos(&[4, 0]), now()).unwrap_err();
    assert!(
        matches!(&error, CallFailure::BadAnswer(m) if m.contains("position 2 in not-now") && m.contains("batch of 2")),
        "{error}"
    );
    // In range, the same shift only holds back the next repo.
    assert_eq!(
        module.prioritize(&repos(&[0, 9]), now()).expect("answers"),
        vec![Priority::Score(0.0), Priority::NotNow]
    );
}

#[test]
fn modules_of_both_answer_shapes_serve_side_by_side() {
    // 0.2.0's `prioritize` (a list of variants) and 0.2.2's `rank` give the same order.
    let variants = load("stars", component("stars", "prioritizer")).expect("0.2.0 loads");
    let ranked = load("rank", rank_component(&[])).expect("0.2.2 loads");
    assert_eq!(variants.contract, "0.2.0");
    assert_eq!(variants.exported_name(Interface::Prioritize), "prioritize");
    let batch = repos(&[8, 2, 30]);
    assert_eq!(
        variants.prioritize(&batch, now()).expect("answers"),
        ranked.prioritize(&batch, now()).expect("answers")
    );
}
