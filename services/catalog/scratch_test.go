package catalog

import "testing"

func TestAssignable(t *testing.T) {
	cases := []struct {
		from, to string
		want     bool
	}{
		{"UInt32", "UInt64", true},
		{"UInt64", "UInt32", false},
		{"UInt32", "Int64", true},
		{"UInt64", "Int64", false},
		{"Int32", "UInt64", false},
		{"Float32", "Float64", true},
		{"String", "LowCardinality(String)", true},
		{"LowCardinality(String)", "String", true},
		{"String", "Nullable(String)", true},
		{"Nullable(String)", "String", false},
		{"DateTime", "Date", false},
		{"Int8", "Int256", true},
		{"Array(UInt8)", "Array(UInt8)", true},
	}
	for _, c := range cases {
		if got := assignable(c.from, c.to); got != c.want {
			t.Errorf("assignable(%s, %s) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
}
