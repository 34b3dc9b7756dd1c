//! Plugins' tables (the `storage` import, below the plugins' bindings): each plugin's
//! namespace, tables made once and held to their schema, rows that round-trip with their
//! types, queries, quotas, and `upsert-newer`.

use crate::harness::*;
use fluid_host::store::plugin_tables::{
    Column, ColumnType, Filter, FilterOp, OrderBy, PluginStorage, Query, StorageError as SE, TableDef, TableLimits, Value as V,
};

/// The limits of a plugin with `fluid.toml`'s defaults.
const LIMITS: TableLimits =
    TableLimits { max_tables: 32, max_rows: 10_000_000, max_storage_mib: 1024, max_read_mib: 16, statement_timeout_ms: 5_000 };

async fn storage(fresh: &Fresh) -> PluginStorage {
    PluginStorage::new(fresh.store.plugin_store().await.unwrap()).await.unwrap()
}

fn column(name: &str, kind: ColumnType, nullable: bool) -> Column {
    Column { name: name.into(), kind, nullable }
}

/// `(id int, name text)`, keyed by `id`.
fn simple(name: &str) -> TableDef {
    TableDef {
        name: name.into(),
        columns: vec![column("id", ColumnType::Int, false), column("name", ColumnType::Text, true)],
        primary_key: vec!["id".into()],
        indexes: vec![],
    }
}

fn all(order_by: &str) -> Query {
    Query {
        columns: vec![],
        filters: vec![],
        order: vec![OrderBy { column: order_by.into(), descending: false }],
        after: None,
        limit: None,
    }
}

fn ids(rows: &[Vec<V>]) -> Vec<i64> {
    rows.iter()
        .map(|r| match r[0] {
            V::Int(i) => i,
            ref other => panic!("not an id: {other:?}"),
        })
        .collect()
}

fn rows_of(range: std::ops::Range<i64>) -> Vec<Vec<V>> {
    range.map(|i| vec![V::Int(i), V::Text(format!("n{i}"))]).collect()
}

fn id_name() -> Vec<String> {
    vec!["id".into(), "name".into()]
}

/// A table is made by its first definition; the same definition again (with an index more)
/// is accepted, another one refused, and a new handle on the store finds the table again.
/// Names outside `[a-z][a-z0-9_]*` and definitions without a key are refused, and a table
/// never made is reported as such.
pub async fn a_table_is_made_once_and_held_to_its_schema(driver: &Driver) {
    let fresh = driver.fresh().await;
    let storage = storage(&fresh).await;
    storage.ensure_table("p", simple("t"), &LIMITS).await.unwrap();
    storage.upsert("p", "t", id_name(), rows_of(0..2), None, &LIMITS).await.unwrap();
    storage.ensure_table("p", simple("t"), &LIMITS).await.expect("the same definition again");
    let indexed = TableDef { indexes: vec![vec!["name".into()]], ..simple("t") };
    storage.ensure_table("p", indexed, &LIMITS).await.expect("an index more");
    let other = TableDef { columns: vec![column("id", ColumnType::Text, false)], ..simple("t") };
    assert!(matches!(storage.ensure_table("p", other, &LIMITS).await, Err(SE::SchemaMismatch(_))));

    let refused = |r: Result<(), SE>| r.expect_err("refused");
    assert!(matches!(refused(storage.ensure_table("p", simple("Bad"), &LIMITS).await), SE::InvalidName(_)));
    assert!(matches!(refused(storage.ensure_table("p", simple("fluid-runs"), &LIMITS).await), SE::InvalidName(_)));
    assert!(matches!(
        refused(storage.ensure_table("p", TableDef { primary_key: vec![], ..simple("u") }, &LIMITS).await),
        SE::InvalidValue(_)
    ));
    let unknown_key = TableDef { primary_key: vec!["nope".into()], ..simple("u") };
    assert!(matches!(refused(storage.ensure_table("p", unknown_key, &LIMITS).await), SE::InvalidName(_)));
    assert!(matches!(storage.select("p", "never", all("id"), &LIMITS).await, Err(SE::NoSuchTable(_))));
    assert!(matches!(storage.select("p", "t", all("nope"), &LIMITS).await, Err(SE::InvalidName(_))), "no such column");

    let again = self::storage(&fresh).await;
    assert_eq!(ids(&again.select("p", "t", all("id"), &LIMITS).await.unwrap()), [0, 1], "the table and its rows are found again");
    storage.close().await;
    again.close().await;
    fresh.store.close().await;
}

/// Each plugin names its tables in its own namespace: two plugins' tables of one name are
/// two tables, and no pair of plugin and table names reaches another plugin's table
/// (`a` + `b_c` is not `a_b` + `c`).
pub async fn each_plugin_has_a_namespace_of_its_own(driver: &Driver) {
    let fresh = driver.fresh().await;
    let storage = storage(&fresh).await;
    for (plugin, table, rows) in [("x", "t", 0..3), ("y", "t", 10..11), ("a", "b_c", 20..22), ("a_b", "c", 30..31)] {
        storage.ensure_table(plugin, simple(table), &LIMITS).await.unwrap();
        storage.upsert(plugin, table, id_name(), rows_of(rows), None, &LIMITS).await.unwrap();
    }
    for (plugin, table, expect) in [("x", "t", vec![0, 1, 2]), ("y", "t", vec![10]), ("a", "b_c", vec![20, 21]), ("a_b", "c", vec![30])] {
        assert_eq!(ids(&storage.select(plugin, table, all("id"), &LIMITS).await.unwrap()), expect, "{plugin}.{table}");
    }
    assert!(matches!(storage.select("z", "t", all("id"), &LIMITS).await, Err(SE::NoSuchTable(_))), "z has no tables");
    assert_eq!(storage.delete("y", "t", vec![], &LIMITS).await.unwrap(), 1);
    assert_eq!(storage.count("x", "t", vec![], &LIMITS).await.unwrap(), 3, "another plugin's delete leaves x's rows");
    storage.close().await;
    fresh.store.close().await;
}

/// Every column type round-trips, nulls too; an upsert of an existing key replaces only
/// the columns it gives. Filters (comparisons, one-of, null, JSON containment), order,
/// limits and keyset pages answer the same on every backend; deletes and counts follow
/// the same filters; values of the wrong type, or null in a column that refuses it, are
/// refused.
pub async fn rows_round_trip_and_queries_filter_order_and_page(driver: &Driver) {
    let fresh = driver.fresh().await;
    let storage = storage(&fresh).await;
    let def = TableDef {
        name: "items".into(),
        columns: vec![
            column("id", ColumnType::Int, false),
            column("name", ColumnType::Text, false),
            column("score", ColumnType::Float, true),
            column("ok", ColumnType::Boolean, true),
            column("doc", ColumnType::Json, true),
        ],
        primary_key: vec!["id".into()],
        indexes: vec![vec!["score".into(), "id".into()]],
    };
    storage.ensure_table("p", def, &LIMITS).await.unwrap();
    let cols: Vec<String> = ["id", "name", "score", "ok", "doc"].map(String::from).to_vec();
    let doc = |k: i64| V::Json(format!(r#"{{"k": {k}, "tag": "t{}"}}"#, k % 2));
    let row = |id: i64, score: V, ok: V, doc: V| vec![V::Int(id), V::Text(format!("n{id} é \"q\"")), score, ok, doc];
    let rows = vec![
        row(1, V::Float(1.5), V::Boolean(true), doc(1)),
        row(2, V::Float(-2.25), V::Boolean(false), doc(2)),
        row(3, V::Null, V::Null, V::Null),
        row(4, V::Float(4.0), V::Boolean(true), doc(3)),
        row(5, V::Float(0.5), V::Boolean(false), V::Json("[1, 2]".into())),
    ];
    assert_eq!(storage.upsert("p", "items", cols.clone(), rows.clone(), None, &LIMITS).await.unwrap(), 5);
    let read = storage.select("p", "items", all("id"), &LIMITS).await.unwrap();
    // JSON comes back as the same document (PostgreSQL's JSONB writes it its own way).
    let json = |v: &V| match v {
        V::Json(t) => serde_json::from_str::<serde_json::Value>(t).map(Some).unwrap(),
        V::Null => None,
        other => panic!("not JSON: {other:?}"),
    };
    for (got, want) in read.iter().zip(&rows) {
        assert_eq!(got[..4], want[..4]);
        assert_eq!(json(&got[4]), json(&want[4]));
    }
    assert_eq!(read.len(), 5);

    // Values at the edges of their types come back as they went, many rows in one upsert.
    let edges = vec![
        vec![
            V::Int(i64::MIN),
            V::Text("\u{1F600} \\ \n \"".into()),
            V::Float(0.1 + 0.2),
            V::Boolean(false),
            V::Json(r#"{"big": 12345678901234567890, "s": "\u00e9"}"#.into()),
        ],
        vec![V::Int(i64::MAX), V::Text(String::new()), V::Float(1e300), V::Null, V::Json("null".into())],
        vec![V::Int(-7), V::Text("x".into()), V::Float(-5e-324), V::Boolean(true), V::Json("\"text\"".into())],
    ];
    assert_eq!(storage.upsert("p", "items", cols.clone(), edges.clone(), None, &LIMITS).await.unwrap(), 3);
    let edge_ids = || vec![Filter { column: "id".into(), op: FilterOp::OneOf(vec![V::Int(i64::MIN), V::Int(i64::MAX), V::Int(-7)]) }];
    let back = storage.select("p", "items", Query { filters: edge_ids(), ..all("id") }, &LIMITS).await.unwrap();
    assert_eq!(back.len(), 3);
    for (got, want) in back.iter().zip([&edges[0], &edges[2], &edges[1]]) {
        assert_eq!(got[..4], want[..4]);
        assert_eq!(json(&got[4]), json(&want[4]));
    }
    assert_eq!(storage.delete("p", "items", edge_ids(), &LIMITS).await.unwrap(), 3);

    let ids_where = |filters: Vec<Filter>| {
        let q = Query { filters, ..all("id") };
        let storage = storage.clone();
        async move { ids(&storage.select("p", "items", q, &LIMITS).await.unwrap()) }
    };
    let f = |column: &str, op: FilterOp| Filter { column: column.into(), op };
    assert_eq!(ids_where(vec![f("score", FilterOp::Gt(V::Float(1.0)))]).await, [1, 4]);
    assert_eq!(ids_where(vec![f("score", FilterOp::Le(V::Int(1)))]).await, [2, 5], "an int compares with a float column");
    assert_eq!(ids_where(vec![f("ok", FilterOp::Eq(V::Boolean(false)))]).await, [2, 5]);
    assert_eq!(ids_where(vec![f("ok", FilterOp::Ne(V::Boolean(false)))]).await, [1, 4], "null is neither");
    assert_eq!(ids_where(vec![f("score", FilterOp::Eq(V::Null))]).await, [3]);
    assert_eq!(ids_where(vec![f("doc", FilterOp::Ne(V::Null))]).await, [1, 2, 4, 5]);
    assert_eq!(ids_where(vec![f("id", FilterOp::OneOf(vec![V::Int(5), V::Int(2), V::Int(9)]))]).await, [2, 5]);
    assert!(ids_where(vec![f("id", FilterOp::OneOf(vec![]))]).await.is_empty(), "one of nothing matches nothing");
    assert_eq!(ids_where(vec![f("doc", FilterOp::JsonContains(r#"{"tag": "t1"}"#.into()))]).await, [1, 4]);
    assert_eq!(ids_where(vec![f("doc", FilterOp::JsonContains(r#"{"tag": "t1", "k": 3}"#.into()))]).await, [4]);
    assert_eq!(ids_where(vec![f("id", FilterOp::Ge(V::Int(2))), f("id", FilterOp::Lt(V::Int(4)))]).await, [2, 3], "every filter holds");

    // Pages of two, by score then id, greatest first: nulls sort apart on each backend, so
    // the pages go over the rows that have a score.
    let by_score = |after: Option<Vec<V>>| Query {
        columns: vec!["score".into(), "id".into()],
        filters: vec![f("score", FilterOp::Ne(V::Null))],
        order: vec![OrderBy { column: "score".into(), descending: true }, OrderBy { column: "id".into(), descending: true }],
        after,
        limit: Some(2),
    };
    let mut pages = vec![];
    let mut after = None;
    loop {
        let page = storage.select("p", "items", by_score(after), &LIMITS).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        pages.push(page.iter().map(|r| r[1].clone()).collect::<Vec<_>>());
    }
    assert_eq!(pages, [vec![V::Int(4), V::Int(1)], vec![V::Int(5), V::Int(2)]]);

    // An upsert of an existing key replaces the columns it gives, and only those (it gives
    // every column that may not be null: the row would be inserted were the key new).
    let some = vec!["id".into(), "name".into(), "score".into()];
    storage.upsert("p", "items", some, vec![vec![V::Int(1), V::Text("one".into()), V::Float(9.0)]], None, &LIMITS).await.unwrap();
    let one = storage.select("p", "items", Query { filters: vec![f("id", FilterOp::Eq(V::Int(1)))], ..all("id") }, &LIMITS).await.unwrap();
    assert_eq!(one[0][..4], [V::Int(1), V::Text("one".into()), V::Float(9.0), V::Boolean(true)]);
    assert_eq!(json(&one[0][4]), json(&rows[0][4]));

    assert_eq!(storage.count("p", "items", vec![f("ok", FilterOp::Eq(V::Boolean(true)))], &LIMITS).await.unwrap(), 2);
    assert_eq!(storage.delete("p", "items", vec![f("ok", FilterOp::Eq(V::Boolean(true)))], &LIMITS).await.unwrap(), 2);
    assert_eq!(storage.count("p", "items", vec![], &LIMITS).await.unwrap(), 3);

    let wrong = storage.upsert("p", "items", cols.clone(), vec![row(6, V::Text("high".into()), V::Null, V::Null)], None, &LIMITS).await;
    assert!(matches!(wrong, Err(SE::InvalidValue(_))), "{wrong:?}");
    let null = storage.upsert("p", "items", vec!["id".into(), "name".into()], vec![vec![V::Int(7), V::Null]], None, &LIMITS).await;
    assert!(matches!(null, Err(SE::InvalidValue(_))), "{null:?}");
    let not_json = storage.upsert("p", "items", cols, vec![row(8, V::Null, V::Null, V::Json("{".into()))], None, &LIMITS).await;
    assert!(matches!(not_json, Err(SE::InvalidValue(_))), "{not_json:?}");
    assert_eq!(storage.count("p", "items", vec![], &LIMITS).await.unwrap(), 3, "nothing refused was written");
    storage.close().await;
    fresh.store.close().await;
}

/// A plugin's quotas hold across all its tables: a table past `max_tables`, rows past
/// `max_rows` or bytes past `max_storage_mib` are refused and the whole upsert writes
/// nothing; replacing rows does not count as adding them, a delete makes room, and
/// another plugin's tables count for it, not for this one.
pub async fn quotas_refuse_what_would_pass_them_and_write_nothing(driver: &Driver) {
    let fresh = driver.fresh().await;
    let storage = storage(&fresh).await;
    let limits = TableLimits { max_tables: 2, max_rows: 5, max_storage_mib: 1, ..LIMITS };
    storage.ensure_table("p", simple("a"), &limits).await.unwrap();
    storage.ensure_table("p", simple("b"), &limits).await.unwrap();
    assert!(matches!(storage.ensure_table("p", simple("c"), &limits).await, Err(SE::QuotaExceeded(_))), "a third table");
    storage.ensure_table("p", simple("a"), &limits).await.expect("a table it has is not a new one");
    storage.ensure_table("q", simple("c"), &limits).await.expect("another plugin's quota is its own");

    storage.upsert("p", "a", id_name(), rows_of(0..3), None, &limits).await.unwrap();
    storage.upsert("p", "b", id_name(), rows_of(0..2), None, &limits).await.unwrap();
    let over = storage.upsert("p", "b", id_name(), rows_of(2..4), None, &limits).await;
    assert!(matches!(&over, Err(SE::QuotaExceeded(m)) if m.contains("max_rows")), "{over:?}");
    assert_eq!(storage.count("p", "b", vec![], &limits).await.unwrap(), 2, "none of the refused upsert was written");
    storage.upsert("p", "b", id_name(), rows_of(0..2), None, &limits).await.expect("replacing rows adds none");
    storage.upsert("q", "c", id_name(), rows_of(0..5), None, &limits).await.expect("q's rows are q's");
    assert_eq!(storage.delete("p", "a", vec![Filter { column: "id".into(), op: FilterOp::Lt(V::Int(2)) }], &limits).await.unwrap(), 2);
    storage.upsert("p", "b", id_name(), rows_of(2..4), None, &limits).await.expect("a delete made room");

    let big = vec![vec![V::Int(9), V::Text("x".repeat(600 * 1024))]];
    storage.upsert("q", "c", id_name(), big.clone(), None, &TableLimits { max_rows: 100, ..limits }).await.expect("600 KiB fit");
    let over = storage
        .upsert(
            "q",
            "c",
            id_name(),
            vec![vec![V::Int(10), V::Text("y".repeat(600 * 1024))]],
            None,
            &TableLimits { max_rows: 100, ..limits },
        )
        .await;
    assert!(matches!(&over, Err(SE::QuotaExceeded(m)) if m.contains("max_storage_mib")), "{over:?}");
    assert_eq!(storage.count("q", "c", vec![], &limits).await.unwrap(), 6);
    // After a delete the bound is what is stored, the bytes freed included: writes after a
    // trim need no measurement of every table until the quota nears again.
    let before = storage.usage_bound("q", &limits).await.unwrap();
    let big_row = vec![Filter { column: "id".into(), op: FilterOp::Eq(V::Int(9)) }];
    assert_eq!(storage.delete("q", "c", big_row, &limits).await.unwrap(), 1);
    let after = storage.usage_bound("q", &limits).await.unwrap();
    assert!(before.bytes > 600 * 1024, "{before:?}");
    assert!(after.rows == 5 && after.bytes < 1024, "the 600 KiB are gone from the bound: {before:?} then {after:?}");
    storage.close().await;
    fresh.store.close().await;
}

/// `upsert-newer`: a stored row is replaced only by a copy with a greater version; older,
/// equal and null-versioned copies are skipped (not errors, not counted), new keys are
/// inserted, and a version column outside the columns given or inside the key is refused.
pub async fn upsert_newer_never_lets_an_older_copy_replace_a_newer_row(driver: &Driver) {
    let fresh = driver.fresh().await;
    let storage = PluginStorage::new(fresh.store.plugin_store().await.unwrap()).await.unwrap();
    let limits = LIMITS;
    let col = |name: &str, kind| Column { name: name.into(), kind, nullable: name == "v" };
    let def = TableDef {
        name: "docs".into(),
        columns: vec![col("id", ColumnType::Text), col("body", ColumnType::Text), col("v", ColumnType::Int)],
        primary_key: vec!["id".into()],
        indexes: vec![],
    };
    storage.ensure_table("p", def, &limits).await.unwrap();
    let cols = || vec!["id".to_string(), "body".to_string(), "v".to_string()];
    let row = |id: &str, body: &str, v: Option<i64>| vec![V::Text(id.into()), V::Text(body.into()), v.map_or(V::Null, V::Int)];
    let put = |rows: Vec<Vec<V>>| storage.upsert("p", "docs", cols(), rows, Some("v"), &limits);

    assert_eq!(
        put(vec![row("a", "a5", Some(5)), row("b", "b5", Some(5)), row("n", "n-null", None)]).await.unwrap(),
        3,
        "new keys are inserted"
    );
    let written = put(vec![
        row("a", "a4", Some(4)), // older: skipped
        row("b", "b6", Some(6)), // newer: replaces
        row("c", "c1", Some(1)), // new key: inserted
        row("n", "n7", Some(7)), // the stored version is null: kept
    ])
    .await
    .unwrap();
    assert_eq!(written, 2, "only the newer copy and the new key are counted");
    assert_eq!(put(vec![row("b", "b6-again", Some(6))]).await.unwrap(), 0, "an equal version is a replay: skipped");
    assert_eq!(put(vec![row("a", "a-null", None)]).await.unwrap(), 0, "a null version never replaces");

    let q = Query { columns: vec!["id".into(), "body".into()], filters: vec![], order: vec![], after: None, limit: None };
    let mut stored: Vec<(String, String)> = storage
        .select("p", "docs", q.clone(), &limits)
        .await
        .unwrap()
        .into_iter()
        .map(|r| match (&r[0], &r[1]) {
            (V::Text(id), V::Text(body)) => (id.clone(), body.clone()),
            other => panic!("unexpected row {other:?}"),
        })
        .collect();
    stored.sort();
    let expect = [("a", "a5"), ("b", "b6"), ("c", "c1"), ("n", "n-null")];
    assert_eq!(stored, expect.map(|(a, b)| (a.to_string(), b.to_string())));
    // A read that would pass max_read_mib is refused while it is read, before it is held.
    let tiny = TableLimits { max_read_mib: 0, ..limits };
    let refused = storage.select("p", "docs", q, &tiny).await;
    assert!(matches!(&refused, Err(SE::InvalidValue(m)) if m.contains("max_read_mib")), "{refused:?}");

    let many: Vec<Vec<V>> = (0..10_001).map(|i| row(&format!("k{i}"), "x", Some(1))).collect();
    let refused = storage.upsert("p", "docs", cols(), many, None, &limits).await;
    assert!(matches!(&refused, Err(SE::InvalidValue(m)) if m.contains("at most 10000 rows")), "one upsert holds the writer: bounded");
    let refused = storage.upsert("p", "docs", vec!["id".into(), "body".into()], vec![], Some("v"), &limits).await;
    assert!(matches!(refused, Err(SE::InvalidValue(m)) if m.contains("one of the columns")), "the version must be given");
    let refused = storage.upsert("p", "docs", cols(), vec![], Some("id"), &limits).await;
    assert!(matches!(refused, Err(SE::InvalidValue(m)) if m.contains("primary key")), "the version cannot be the key");
    let refused = storage.upsert("p", "docs", cols(), vec![], Some("nope"), &limits).await;
    assert!(matches!(refused, Err(SE::InvalidName(_))), "the version must be a column");
    let refused = storage.upsert("p", "docs", cols(), vec![], Some("body"), &limits).await;
    assert!(
        matches!(refused, Err(SE::InvalidValue(m)) if m.contains("int or float")),
        "a text version would order differently per backend"
    );
    storage.close().await;
    fresh.store.close().await;
}
