package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type sample struct {
	Name  string `yaml:"name"`
	Count int    `yaml:"count"`
	Inner struct {
		On bool `yaml:"on"`
	} `yaml:"inner"`
	File string `yaml:"-"`
}

func parse(t *testing.T, yaml string, args ...string) (sample, error) {
	t.Helper()
	var s sample
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.StringVar(&s.File, "config", "", "")
	fs.StringVar(&s.Name, "name", "default-name", "")
	fs.IntVar(&s.Count, "count", 1, "")
	fs.BoolVar(&s.Inner.On, "inner.on", false, "")
	if yaml != "" {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-config", p)
	}
	err := Load(fs, args, "config", &s)
	return s, err
}

func TestPrecedenceDefaultsFileFlags(t *testing.T) {
	s, err := parse(t, "")
	if err != nil || s.Name != "default-name" || s.Count != 1 {
		t.Fatalf("defaults: %+v %v", s, err)
	}
	s, err = parse(t, "name: from-file\ncount: 5\ninner:\n  on: true\n")
	if err != nil || s.Name != "from-file" || s.Count != 5 || !s.Inner.On {
		t.Fatalf("file: %+v %v", s, err)
	}
	s, err = parse(t, "name: from-file\ncount: 5\n", "-count", "9")
	if err != nil || s.Name != "from-file" || s.Count != 9 {
		t.Fatalf("flag over file: %+v %v", s, err)
	}
}

func TestUnknownKeysAreErrors(t *testing.T) {
	_, err := parse(t, "name: x\ninner:\n  of: true\n")
	if err == nil || !strings.Contains(err.Error(), "field of not found") || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("err = %v", err)
	}
}

func TestStringList(t *testing.T) {
	var l StringList
	if err := l.Set(" a, b,,c "); err != nil {
		t.Fatal(err)
	}
	if l.String() != "a,b,c" {
		t.Fatalf("got %q", l.String())
	}
}
