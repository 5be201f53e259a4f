package ingest

import (
	"testing"

	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
)

// A streamed file without a format is read by its name's extension, as the API says.
func TestFormatOfAFile(t *testing.T) {
	for _, c := range []struct {
		given ingestv1.Format
		name  string
		want  ingestv1.Format
	}{
		{ingestv1.Format_FORMAT_UNSPECIFIED, "sales.csv", ingestv1.Format_FORMAT_CSV},
		{ingestv1.Format_FORMAT_UNSPECIFIED, "Sales.CSV.gz", ingestv1.Format_FORMAT_CSV},
		{ingestv1.Format_FORMAT_UNSPECIFIED, "rows.parquet", ingestv1.Format_FORMAT_PARQUET},
		{ingestv1.Format_FORMAT_UNSPECIFIED, "rows.ndjson.gz", ingestv1.Format_FORMAT_NDJSON},
		{ingestv1.Format_FORMAT_UNSPECIFIED, "", ingestv1.Format_FORMAT_NDJSON},
		{ingestv1.Format_FORMAT_UNSPECIFIED, "csv", ingestv1.Format_FORMAT_NDJSON},
		{ingestv1.Format_FORMAT_NDJSON, "looks.csv", ingestv1.Format_FORMAT_NDJSON},
		{ingestv1.Format_FORMAT_PARQUET, "x.csv", ingestv1.Format_FORMAT_PARQUET},
	} {
		if got := formatOf(c.given, c.name); got != c.want {
			t.Errorf("formatOf(%s, %q) = %s, want %s", c.given, c.name, got, c.want)
		}
	}
}
