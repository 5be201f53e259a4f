package warehouse

import "testing"

func TestShapeOf(t *testing.T) {
	for _, c := range []struct {
		sql  string
		want shape
	}{
		{"SELECT 1", shapeClause},
		{"  -- leading comment\n/* block */ (SELECT 1) UNION ALL (SELECT 2)", shapeClause},
		{"WITH x AS (SELECT 1) SELECT * FROM x", shapeClause},
		{"INSERT INTO db.t (a, b)\nSELECT a, b FROM db.s -- trailing comment", shapeClause},
		{"insert into db.t select * from db.s", shapeClause},
		{"SELECT 1 SETTINGS max_threads = 1", shapeSession},
		{"select 1 settings max_threads = 1", shapeSession},
		{"SELECT 1 FORMAT JSON", shapeSession},
		{"INSERT INTO db.t VALUES (1, 2)", shapeSession},
		{"INSERT INTO db.t FORMAT JSONEachRow {\"a\": 1}", shapeSession},
		{"INSERT INTO db.t SELECT 'values'", shapeSession}, // careful: the word appears
		{"CREATE TABLE db.s AS db.t", shapeDDL},
		{"DROP TABLE IF EXISTS db.s", shapeDDL},
		{"ALTER TABLE db.s MOVE PARTITION ID '2023' TO TABLE db.t", shapeDDL},
		{"truncate table db.t", shapeDDL},
		{"EXCHANGE TABLES db.a AND db.b", shapeDDL},
		{"CREATE TABLE db.s ENGINE = MergeTree ORDER BY a AS SELECT * FROM db.t", shapeSession},
		{"ALTER TABLE db.mv MODIFY QUERY SELECT * FROM db.t", shapeSession},
		{"OPTIMIZE TABLE db.t FINAL", shapeSession},
		{"SYSTEM STOP MERGES db.t", shapeSession},
		{"SELECTED", shapeSession},
		{"", shapeSession},
		{"-- only a comment", shapeSession},
	} {
		if got := shapeOf(c.sql); got != c.want {
			t.Errorf("shapeOf(%q) = %d, want %d", c.sql, got, c.want)
		}
	}
}

func TestSettingsClause(t *testing.T) {
	got, err := settingsClause(Settings{"max_threads": 2, "max_memory_usage": uint64(1 << 20), "log_comment": "a'b"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `SETTINGS log_comment = 'a\'b', max_memory_usage = 1048576, max_threads = 2`; got != want {
		t.Errorf("settingsClause = %s, want %s", got, want)
	}
	if _, err := settingsClause(Settings{"x; DROP": 1}); err == nil {
		t.Error("a setting name that is not a word was accepted")
	}
}
