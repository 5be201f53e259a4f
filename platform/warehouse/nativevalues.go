package warehouse

import (
	"fmt"
	"math/big"
	"net"
	"reflect"
	"strconv"
	"time"
)

var (
	timeType    = reflect.TypeFor[time.Time]()
	bigIntType  = reflect.TypeFor[*big.Int]()
	stringerTyp = reflect.TypeFor[fmt.Stringer]()
)

// normalize turns a value scanned by clickhouse-go into the representation
// documented on Result, so both engines return the same Go values.
func normalize(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	switch x := v.Interface().(type) {
	case time.Time:
		return x.UTC()
	case *big.Int:
		if x == nil {
			return nil
		}
		return x.String()
	case net.IP:
		return x.String()
	case []byte:
		return string(x)
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint()
	case reflect.Float32:
		// Widen through the shortest decimal form, as chDB's text output
		// does: 0.1f becomes 0.1, not 0.10000000149011612.
		f, _ := strconv.ParseFloat(strconv.FormatFloat(v.Float(), 'g', -1, 32), 64)
		return f
	case reflect.Float64:
		return v.Float()
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return v.Bool()
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return normalize(v.Elem())
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return []any{}
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = normalize(v.Index(i))
		}
		return out
	case reflect.Map:
		out := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			out[fmt.Sprint(normalize(it.Key()))] = normalize(it.Value())
		}
		return out
	}
	if v.Type().Implements(stringerTyp) {
		return v.Interface().(fmt.Stringer).String()
	}
	return v.Interface()
}

// convertTo converts an inserted value to t, the type clickhouse-go scans
// the target column into and therefore accepts for it.
func convertTo(v any, t reflect.Type) (any, error) {
	if v == nil {
		return nil, nil
	}
	rv := reflect.ValueOf(v)
	if rv.Type() == t {
		return v, nil
	}
	out, err := convertValue(rv, t)
	if err != nil {
		return nil, err
	}
	return out.Interface(), nil
}

func convertValue(rv reflect.Value, t reflect.Type) (reflect.Value, error) {
	for rv.Kind() == reflect.Interface || (rv.Kind() == reflect.Pointer && rv.Type() != t && rv.Type() != bigIntType) {
		if rv.IsNil() {
			return reflect.Zero(t), nil
		}
		rv = rv.Elem()
	}
	if rv.Type() == t {
		return rv, nil
	}
	if t.Kind() == reflect.Pointer && t != bigIntType {
		// Nullable column: clickhouse-go takes a pointer to the base type.
		inner, err := convertValue(rv, t.Elem())
		if err != nil {
			return reflect.Value{}, err
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(inner)
		return p, nil
	}
	switch {
	case isInt(t.Kind()) && isInt(rv.Kind()):
		out := reflect.New(t).Elem()
		if out.OverflowInt(rv.Int()) {
			return reflect.Value{}, fmt.Errorf("%d overflows %s", rv.Int(), t)
		}
		out.SetInt(rv.Int())
		return out, nil
	case isUint(t.Kind()) && isUint(rv.Kind()):
		out := reflect.New(t).Elem()
		if out.OverflowUint(rv.Uint()) {
			return reflect.Value{}, fmt.Errorf("%d overflows %s", rv.Uint(), t)
		}
		out.SetUint(rv.Uint())
		return out, nil
	case isUint(t.Kind()) && isInt(rv.Kind()):
		out := reflect.New(t).Elem()
		if rv.Int() < 0 || out.OverflowUint(uint64(rv.Int())) {
			return reflect.Value{}, fmt.Errorf("%d overflows %s", rv.Int(), t)
		}
		out.SetUint(uint64(rv.Int()))
		return out, nil
	case isInt(t.Kind()) && isUint(rv.Kind()):
		out := reflect.New(t).Elem()
		if rv.Uint() > 1<<63-1 || out.OverflowInt(int64(rv.Uint())) {
			return reflect.Value{}, fmt.Errorf("%d overflows %s", rv.Uint(), t)
		}
		out.SetInt(int64(rv.Uint()))
		return out, nil
	case isFloat(t.Kind()) && (isFloat(rv.Kind()) || isInt(rv.Kind()) || isUint(rv.Kind())):
		return rv.Convert(t), nil
	case t.Kind() == reflect.String && rv.Kind() == reflect.String:
		return rv.Convert(t), nil
	case t.Kind() == reflect.String && rv.Type() == reflect.TypeFor[[]byte]():
		return reflect.ValueOf(string(rv.Bytes())).Convert(t), nil
	case t == timeType && rv.Type() == timeType:
		return rv, nil
	case t.Kind() == reflect.Slice && (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array):
		out := reflect.MakeSlice(t, rv.Len(), rv.Len())
		for i := 0; i < rv.Len(); i++ {
			e, err := convertValue(rv.Index(i), t.Elem())
			if err != nil {
				return reflect.Value{}, fmt.Errorf("element %d: %w", i, err)
			}
			if !e.Type().AssignableTo(t.Elem()) {
				return reflect.Value{}, fmt.Errorf("element %d: cannot use %s as %s", i, e.Type(), t.Elem())
			}
			out.Index(i).Set(e)
		}
		return out, nil
	case t.Kind() == reflect.Interface && rv.Type().Implements(t):
		return rv, nil
	}
	// Leave the rest (big integers, decimals, maps, ...) to the driver,
	// which reports what it cannot take.
	if rv.Kind() == t.Kind() && rv.Type().ConvertibleTo(t) {
		return rv.Convert(t), nil
	}
	return rv, nil
}

func isInt(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Int64
}

func isUint(k reflect.Kind) bool {
	return k >= reflect.Uint && k <= reflect.Uintptr
}

func isFloat(k reflect.Kind) bool {
	return k == reflect.Float32 || k == reflect.Float64
}
