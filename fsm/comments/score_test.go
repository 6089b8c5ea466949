package comments

import (
	"math"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// wilsonBig is the Wilson lower bound in 256-bit arithmetic.
func wilsonBig(ups, downs uint64) float64 {
	const prec = 256
	f := func(x float64) *big.Float { return new(big.Float).SetPrec(prec).SetFloat64(x) }
	u := func(x uint64) *big.Float { return new(big.Float).SetPrec(prec).SetUint64(x) }
	z := f(wilsonZ)
	z2 := new(big.Float).Mul(z, z)
	n := u(ups + downs)
	p := new(big.Float).Quo(u(ups), n)
	q := new(big.Float).Quo(u(downs), n)
	center := new(big.Float).Add(p, new(big.Float).Quo(z2, new(big.Float).Mul(f(2), n)))
	inner := new(big.Float).Add(new(big.Float).Mul(p, q),
		new(big.Float).Quo(z2, new(big.Float).Mul(f(4), n)))
	inner.Quo(inner, n)
	spread := new(big.Float).Mul(z, new(big.Float).Sqrt(inner))
	lower := new(big.Float).Sub(center, spread)
	lower.Quo(lower, new(big.Float).Add(f(1), new(big.Float).Quo(z2, n)))
	r, _ := lower.Float64()
	return r
}

func TestWilsonLowerBound(t *testing.T) {
	require.Equal(t, 0.0, wilsonLowerBound(0, 0))
	require.Equal(t, 0.0, wilsonLowerBound(0, 7))
	require.False(t, math.Signbit(wilsonLowerBound(0, 1)))
	for ups := uint64(0); ups < 60; ups++ {
		for downs := uint64(0); downs < 60; downs++ {
			if ups+downs == 0 {
				continue
			}
			got, want := wilsonLowerBound(ups, downs), wilsonBig(ups, downs)
			require.InDelta(t, want, got, 1e-14, "ups %d downs %d", ups, downs)
		}
	}
	// More upvotes at the same downvotes never rank lower, nor more
	// downvotes at the same upvotes higher.
	for ups := uint64(0); ups < 200; ups++ {
		for downs := uint64(0); downs < 200; downs++ {
			require.LessOrEqual(t, wilsonLowerBound(ups, downs+1), wilsonLowerBound(ups, downs))
			require.GreaterOrEqual(t, wilsonLowerBound(ups+1, downs), wilsonLowerBound(ups, downs))
		}
	}
}

// TestWilsonGolden pins the exact bits, which every platform must
// reproduce: a fused multiply-add anywhere in wilsonLowerBound would change
// some of them, and nodes on different platforms would then build
// different indexes.
func TestWilsonGolden(t *testing.T) {
	golden := []struct {
		ups, downs uint64
		bits       uint64
	}{
		{1, 0, 0x3fd8387be066ba34},
		{458, 49, 0x3fec53a4389ba13c},
		{207, 22, 0x3fec085cb122ffd9},
		{17, 3, 0x3fe716f480701399},
		{3, 3, 0x3fd12a6074e6e453},
		{1, 1000000, 0x3e9412a5122777fa},
		{123456789, 98765432, 0x3fe1c6c2da399aca},
	}
	for i, g := range golden {
		got := math.Float64bits(wilsonLowerBound(g.ups, g.downs))
		require.Equal(t, g.bits, got, "#%d ups %d downs %d: %#x", i, g.ups, g.downs, got)
	}
}

func TestControversy(t *testing.T) {
	require.Zero(t, controversy(0, 0))
	require.Zero(t, controversy(5, 0))
	require.Zero(t, controversy(0, 5))
	require.Equal(t, uint64(1)<<32, controversy(1, 1)) // 2^1
	require.Equal(t, uint64(2)<<32, controversy(2, 2)) // 4^1
	require.Equal(t, uint64(3)<<32, controversy(4, 4)) // 8^1

	// The order is that of Reddit's (ups+downs)^(min/max), wherever the
	// two powers differ by more than the fixed-point resolution.
	reddit := func(ups, downs uint64) float64 {
		lo, hi := min(ups, downs), max(ups, downs)
		return math.Pow(float64(ups+downs), float64(lo)/float64(hi))
	}
	type pair struct{ ups, downs uint64 }
	var pairs []pair
	for ups := uint64(1); ups <= 40; ups++ {
		for downs := uint64(1); downs <= 40; downs++ {
			pairs = append(pairs, pair{ups, downs})
		}
	}
	pairs = append(pairs, pair{1000, 100}, pair{100000, 99999}, pair{1 << 40, 1 << 39})
	for _, a := range pairs {
		for _, b := range pairs {
			ra, rb := reddit(a.ups, a.downs), reddit(b.ups, b.downs)
			ca, cb := controversy(a.ups, a.downs), controversy(b.ups, b.downs)
			if math.Abs(math.Log2(ra)-math.Log2(rb)) < 1e-8 {
				continue
			}
			require.Equal(t, ra < rb, ca < cb, "%v %v: %g %g, %d %d", a, b, ra, rb, ca, cb)
		}
	}
}

func TestLog2Fixed32(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := rapid.Uint64Min(1).Draw(t, "m")
		got := float64(log2Fixed32(m)) / (1 << 32)
		want := math.Log2(float64(m))
		if math.Abs(got-want) > 1e-8 {
			t.Fatalf("log2(%d) = %v, want %v", m, got, want)
		}
	})
}

func TestSortKeyEncodings(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := rapid.Int64().Draw(t, "a")
		b := rapid.Int64().Draw(t, "b")
		if (a < b) != (ascInt(a) < ascInt(b)) {
			t.Fatalf("ascInt order of %d, %d", a, b)
		}
		x := rapid.Float64().Draw(t, "x")
		y := rapid.Float64().Draw(t, "y")
		if math.IsNaN(x) || math.IsNaN(y) {
			t.Skip("NaN")
		}
		if (x < y) != (ascFloat(x) < ascFloat(y)) || (x == y) != (ascFloat(x) == ascFloat(y)) {
			t.Fatalf("ascFloat order of %v, %v", x, y)
		}
	})
	require.Equal(t, ascFloat(0), ascFloat(math.Copysign(0, -1)))
}
