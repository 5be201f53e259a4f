package populate

import (
	"fmt"
	"testing"
)

func TestRepointSource(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"SELECT id FROM `db`.`a` AS `a`", "SELECT id FROM (SELECT * FROM db.a WHERE p) AS `a`"},
		// Only the left-most reference is the trigger; a self-join reads the whole table.
		{"SELECT x.id FROM `db`.`a` AS x LEFT JOIN `db`.`a` AS y ON y.id = x.id % 10", "SELECT x.id FROM (SELECT * FROM db.a WHERE p) AS x LEFT JOIN `db`.`a` AS y ON y.id = x.id % 10"},
	} {
		q, err := repointSource(tc.sql, "db", "a")
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		if got := fmt.Sprintf(q, "SELECT * FROM db.a WHERE p"); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.sql, got, tc.want)
		}
	}
	if _, err := repointSource("SELECT id FROM `db`.`b` AS b JOIN `db`.`a` AS a USING id", "db", "a"); err == nil {
		t.Error("a query whose left-most table is not the source: want an error")
	}
}
