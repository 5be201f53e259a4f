// Package config loads a process's configuration: defaults (the values the flags are
// registered with), then an optional YAML file (unknown keys are errors), then the flags given
// on the command line.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load parses args into fs (whose flags are bound to target's fields, with their defaults),
// decodes the YAML file named by the flag configFlag into target when it is set, and then
// re-applies the flags given in args so that they win over the file.
func Load(fs *flag.FlagSet, args []string, configFlag string, target any) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	f := fs.Lookup(configFlag)
	if f == nil || f.Value.String() == "" {
		return nil
	}
	path := f.Value.String()
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if err := DecodeYAML(path, data, target); err != nil {
		return err
	}
	// Flags win over the file: parse them again on top of what the file set.
	return fs.Parse(args)
}

// DecodeYAML decodes data into target; a key target does not have is an error naming the key
// and its line.
func DecodeYAML(path string, data []byte, target any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(target); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return fmt.Errorf("config file %s: %s", path, strings.Join(te.Errors, "; "))
		}
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// StringList is a flag holding a comma-separated list.
type StringList []string

func (l *StringList) String() string { return strings.Join(*l, ",") }

// Set splits the value on commas, dropping empty items.
func (l *StringList) Set(v string) error {
	*l = nil
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
