package threshold

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Vars are the values a display template can name.
type Vars struct {
	// Value is the field's current value ({value}).
	Value float64
	// Threshold is the threshold that was crossed ({threshold_value}); it
	// renders empty when HasThreshold is false.
	Threshold    float64
	HasThreshold bool
	// Op is the rule's operator ({op_symbol}).
	Op Op
	// CheckName is the prefix generic matching stripped ({check_name}).
	CheckName string
	// MetricName is the full field name ({metric_name}).
	MetricName string
	// Status is the level of the value ({status}).
	Status Level
	// Data is the plugin's data: any field can be named, nested ones with
	// "." ({partitions./.percent}). {output} is the field
	// "<check_name>_output" (or "output") of Data.
	Data map[string]any
}

// Render expands a display template. A placeholder is {name} or
// {name:.Nf} (N decimals); "{{" and "}}" are literal braces. A name that is
// neither a variable nor a field of Data is left in the text as written
// ({missing} renders as "{missing}"), so a template never fails.
func Render(tmpl string, v *Vars) string {
	var b strings.Builder
	b.Grow(len(tmpl) + 16)
	for i := 0; i < len(tmpl); {
		c := tmpl[i]
		if c == '{' && i+1 < len(tmpl) && tmpl[i+1] == '{' {
			b.WriteByte('{')
			i += 2
			continue
		}
		if c == '}' && i+1 < len(tmpl) && tmpl[i+1] == '}' {
			b.WriteByte('}')
			i += 2
			continue
		}
		if c != '{' {
			b.WriteByte(c)
			i++
			continue
		}
		end := strings.IndexByte(tmpl[i+1:], '}')
		if end < 0 {
			b.WriteString(tmpl[i:])
			break
		}
		inner := tmpl[i+1 : i+1+end]
		placeholder := tmpl[i : i+2+end]
		i += 2 + end
		name, spec := inner, ""
		if k := strings.LastIndexByte(inner, ':'); k >= 0 && strings.HasPrefix(inner[k+1:], ".") {
			name, spec = inner[:k], inner[k+1:]
		}
		val, ok := v.lookup(name)
		if !ok {
			b.WriteString(placeholder)
			continue
		}
		b.WriteString(formatWith(val, spec))
	}
	return b.String()
}

func (v *Vars) lookup(name string) (any, bool) {
	switch name {
	case "value":
		return v.Value, true
	case "threshold_value":
		if !v.HasThreshold {
			return "", true
		}
		return v.Threshold, true
	case "op_symbol":
		if v.Op == OpNagios {
			return "", true
		}
		return v.Op.String(), true
	case "check_name":
		return v.CheckName, true
	case "metric_name":
		return v.MetricName, true
	case "status":
		return v.Status.String(), true
	case "output":
		if v.CheckName != "" {
			if x, ok := Field(v.Data, v.CheckName+"_output"); ok {
				return x, true
			}
		}
		if x, ok := Field(v.Data, "output"); ok {
			return x, true
		}
		return "", true
	}
	return Field(v.Data, name)
}

// formatWith formats a value, honouring a ".Nf" spec for numbers.
func formatWith(x any, spec string) string {
	if spec != "" && strings.HasSuffix(spec, "f") {
		if n, err := strconv.Atoi(spec[1 : len(spec)-1]); err == nil && n >= 0 && n < 20 {
			if f, ok := ToFloat(x); ok {
				return strconv.FormatFloat(f, 'f', n, 64)
			}
		}
	}
	return FormatValue(x)
}

// FormatValue renders a field value for text: whole numbers without a
// fraction, others rounded to at most 2 decimals (4 significant digits below
// 1), strings as they are, lists and maps as JSON.
func FormatValue(x any) string {
	switch t := x.(type) {
	case string:
		return t
	case nil:
		return ""
	case bool:
		return strconv.FormatBool(t)
	case []any, map[string]any:
		b, err := json.Marshal(t)
		if err != nil {
			return fmt.Sprint(t)
		}
		return string(b)
	}
	if f, ok := ToFloat(x); ok {
		return FormatFloat(f)
	}
	return fmt.Sprint(x)
}

// FormatFloat renders a number the way FormatValue does.
func FormatFloat(f float64) string {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return strconv.FormatFloat(f, 'f', -1, 64)
	case f == math.Trunc(f) && math.Abs(f) < 1e15:
		return strconv.FormatFloat(f, 'f', 0, 64)
	case math.Abs(f) >= 1:
		return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', 4, 64)
}

// ToFloat converts a field value to a number: Go numbers, booleans (1/0),
// json.Number and numeric strings. Other values are not numbers.
func ToFloat(x any) (float64, bool) {
	switch t := x.(type) {
	case float64:
		return t, true
	case float32:
		return float64(t), true
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	case int32:
		return float64(t), true
	case uint64:
		return float64(t), true
	case uint32:
		return float64(t), true
	case uint:
		return float64(t), true
	case bool:
		if t {
			return 1, true
		}
		return 0, true
	case json.Number:
		f, err := t.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
		return f, err == nil
	}
	return 0, false
}

// Field finds a field in plugin data by path: an exact key first, then
// nested maps, splitting the path at any "." (so both a flat
// "partitions./.percent" key and nested maps partitions -> / -> percent are
// found).
func Field(data map[string]any, path string) (any, bool) {
	if data == nil {
		return nil, false
	}
	if x, ok := data[path]; ok {
		return x, true
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		if sub, ok := data[path[:i]].(map[string]any); ok {
			if x, ok := Field(sub, path[i+1:]); ok {
				return x, true
			}
		}
	}
	return nil, false
}

// Walk calls fn for every leaf of plugin data, with its field path (nested
// keys joined by "."), in sorted order. Maps are descended; any other value
// (lists included) is a leaf.
func Walk(data map[string]any, fn func(path string, v any)) {
	walk("", data, fn)
}

func walk(prefix string, data map[string]any, fn func(string, any)) {
	var buf [32]string // no allocation for the usual few keys
	keys := buf[:0]
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		if sub, ok := data[k].(map[string]any); ok {
			walk(p, sub, fn)
			continue
		}
		fn(p, data[k])
	}
}
