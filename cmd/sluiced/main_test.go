package main_test

import (
	"os"
	"testing"

	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

func TestMain(m *testing.M) {
	os.Exit(sluicetest.Main(m))
}
