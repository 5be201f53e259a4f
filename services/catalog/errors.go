package catalog

import "fmt"

func errRange(key string, v, lo, hi int) error {
	return fmt.Errorf("%s: %d is outside %d..%d", key, v, lo, hi)
}
