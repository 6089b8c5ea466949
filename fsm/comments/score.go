package comments

import (
	"math"
	"math/bits"
)

// wilsonZ is the quantile of the standard normal distribution for the 80 %
// confidence interval that ranks comments as "best", as on Reddit.
const wilsonZ = 1.281551565545

// wilsonLowerBound returns the lower bound of the Wilson score interval of
// the share of upvotes among ups+downs votes, or 0 without upvotes (where
// it is exactly 0 but rounding would leave a speck either side of it).
//
// NB: every product is wrapped in an explicit float64 conversion. The Go
// spec lets the compiler fuse x*y+z into one fused multiply-add (it does
// on arm64, ppc64le and s390x, among others), which rounds once instead of
// twice; an explicit conversion forces the rounding. With that, and with
// +, -, / and math.Sqrt correctly rounded by IEEE 754, the result is the
// same bits on every platform, as the indexes of all nodes require.
func wilsonLowerBound(ups, downs uint64) float64 {
	if ups == 0 {
		return 0
	}
	const z2 = wilsonZ * wilsonZ // constant: exact, then rounded once
	n := float64(ups + downs)
	p := float64(ups) / n
	q := float64(downs) / n
	center := p + z2/float64(2*n)
	spread := float64(wilsonZ * math.Sqrt((float64(p*q)+z2/float64(4*n))/n))
	lower := (center - spread) / (1 + z2/n)
	return lower
}

// controversy returns Reddit's controversy (ups+downs)^(min/max) as its
// base-2 logarithm (min/max)·log2(ups+downs) in fixed point with 32
// fractional bits, or 0 when either count is 0. The logarithm orders
// comments exactly as the power does, and integer arithmetic makes it the
// same on every platform.
func controversy(ups, downs uint64) uint64 {
	if ups == 0 || downs == 0 {
		return 0
	}
	lo, hi := ups, downs
	if lo > hi {
		lo, hi = hi, lo
	}
	magnitude := ups + downs
	if magnitude < ups {
		magnitude = math.MaxUint64 // cannot happen with real votes
	}
	l := log2Fixed32(magnitude)

	// l·lo/hi < l < 2^38, so the quotient fits and Div64 cannot panic.
	prodHi, prodLo := bits.Mul64(l, lo)
	quo, _ := bits.Div64(prodHi, prodLo, hi)
	return quo
}

// log2Fixed32 returns floor-ish log2(m) for m ≥ 1 in fixed point with 32
// fractional bits, computed bit by bit by repeated squaring: each step
// truncates, so the result is within a few units of the last place below
// the true value, and the same everywhere.
func log2Fixed32(m uint64) uint64 {
	k := uint64(bits.Len64(m) - 1)
	y := m << (63 - k) // m / 2^k in [1, 2), as Q63
	var frac uint64
	for i := 0; i < 32; i++ {
		hi, lo := bits.Mul64(y, y) // y² as Q126, in [1, 4)
		frac <<= 1
		if hi >= 1<<63 { // y² ≥ 2: take y²/2
			frac |= 1
			y = hi
		} else {
			y = hi<<1 | lo>>63
		}
	}
	return k<<32 | frac
}
