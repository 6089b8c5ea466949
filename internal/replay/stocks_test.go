package replay

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/client/clienttest"
)

// stocksFile is the real stock file, outside the repository.
const stocksFile = "../../../shared/data/stocks_daily.csv"

// stocksHeader is the header line of the stock file.
const stocksHeader = "date,open,high,low,close,adjusted_close,volume," +
	"dividend_amount,split_coefficient,Name"

// wantLastCloses are the last closes of the real file named by the issue.
var wantLastCloses = map[string]string{
	"AAPL": "116.03",
	"MSFT": "213.87",
	"TSLA": "574",
	"GOOG": "1771.43",
}

func loadRealStocks(t *testing.T) []StockQuote {
	t.Helper()
	if _, err := os.Stat(stocksFile); err != nil {
		t.Skipf("real stock file not available: %v", err)
	}
	quotes, err := LoadStocks(stocksFile)
	require.NoError(t, err)
	return quotes
}

func TestLoadStocksRealFile(t *testing.T) {
	quotes := loadRealStocks(t)

	require.Len(t, quotes, 38268)
	for i := 1; i < len(quotes); i++ {
		require.False(t, quotes[i].Date.Before(quotes[i-1].Date), "quote %d is out of order", i)
	}
	first, last := quotes[0], quotes[len(quotes)-1]
	assert.Equal(t, 1999, first.Date.Year())
	assert.Equal(t, time.Date(2020, 11, 25, 0, 0, 0, 0, time.UTC), last.Date)
	assert.Equal(t, time.UTC, last.Date.Location())

	closes := LastCloses(quotes)
	assert.Len(t, closes, 9)
	for symbol, want := range wantLastCloses {
		assert.Equal(t, want, closes[symbol], symbol)
	}
}

func TestReadStocksOrdersOldestFirstAndKeepsTies(t *testing.T) {
	const csv = stocksHeader + `
2020-11-25,1,1,1,574.0,1,1,0.0,1.0,TSLA
2020-11-24,1,1,1,555.38,1,1,0.0,1.0,TSLA
2020-11-24,1,1,1,31.910999999999998,1,1,0.0,1.0,FB
2020-11-25,1,1,1,116.030,1,1,0.0,1.0,AAPL
2020-11-23,1,1,1,113.85,1,1,0.0,1.0,AAPL
2020-11-24,1,1,1,115.17,1,1,0.0,1.0,AAPL
`
	quotes, err := ReadStocks(strings.NewReader(csv))
	require.NoError(t, err)

	var got []string
	for _, q := range quotes {
		got = append(got, q.Date.Format(time.DateOnly)+" "+q.Symbol+" "+q.Close)
	}
	assert.Equal(t, []string{
		"2020-11-23 AAPL 113.85",
		"2020-11-24 TSLA 555.38",
		"2020-11-24 FB 31.911",
		"2020-11-24 AAPL 115.17",
		"2020-11-25 TSLA 574",
		"2020-11-25 AAPL 116.03",
	}, got)
	assert.Equal(t, map[string]string{"TSLA": "574", "AAPL": "116.03", "FB": "31.911"},
		LastCloses(quotes))
}

func TestReadStocksRejectsBadInput(t *testing.T) {
	tests := []string{
		"",
		"date,close\n2020-01-01,1\n",
		"date,close,Name\nyesterday,1,AAPL\n",
		"date,close,Name\n2020-01-01,,AAPL\n",
		"date,close,Name\n2020-01-01,1\n",
	}
	for i, input := range tests {
		_, err := ReadStocks(strings.NewReader(input))
		assert.Error(t, err, "#%d", i)
	}
}

func TestCanonicalDecimal(t *testing.T) {
	tests := []struct{ in, want string }{
		{"574.0", "574"},
		{"574", "574"},
		{"574.", "574"},
		{"116.03", "116.03"},
		{"116.030", "116.03"},
		{"0116.03", "116.03"},
		{"0.50", "0.5"},
		{".5", "0.5"},
		{"1771.43", "1771.43"},
		{"100", "100"},
	}
	for i, tt := range tests {
		assert.Equal(t, tt.want, CanonicalDecimal(tt.in), "#%d %q", i, tt.in)
	}
}

func TestPartitionBySymbolKeepsEachSymbolInOneOrderedQueue(t *testing.T) {
	quotes := loadRealStocks(t)

	for _, workers := range []int{1, 4, 9, 32} {
		queues := partitionBySymbol(quotes, workers)
		assert.Len(t, queues, min(workers, 9))

		total := 0
		owner := map[string]int{}
		for i, queue := range queues {
			total += len(queue)
			for j, q := range queue {
				if prev, ok := owner[q.Symbol]; ok {
					require.Equal(t, prev, i, "%s is split over queues", q.Symbol)
				}
				owner[q.Symbol] = i
				if j > 0 {
					require.False(t, q.Date.Before(queue[j-1].Date))
				}
			}
		}
		assert.Equal(t, len(quotes), total)
	}
}

func newClient(t *testing.T, addrs []string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{
		Addrs:        addrs,
		RetryBackoff: time.Millisecond,
		MaxBackoff:   5 * time.Millisecond,
	})
	require.NoError(t, err)
	return c
}

func writeSmallFile(t *testing.T) string {
	t.Helper()
	const csv = stocksHeader + `
2020-11-25,1,1,1,574.0,1,1,0.0,1.0,TSLA
2020-11-24,1,1,1,555.38,1,1,0.0,1.0,TSLA
2020-11-23,1,1,1,521.85,1,1,0.0,1.0,TSLA
2020-11-25,1,1,1,116.03,1,1,0.0,1.0,AAPL
2020-11-24,1,1,1,115.17,1,1,0.0,1.0,AAPL
2020-11-23,1,1,1,113.85,1,1,0.0,1.0,AAPL
2020-11-25,1,1,1,213.87,1,1,0.0,1.0,MSFT
2020-11-24,1,1,1,213.86,1,1,0.0,1.0,MSFT
`
	path := t.TempDir() + "/stocks.csv"
	require.NoError(t, os.WriteFile(path, []byte(csv), 0o600))
	return path
}

func TestStocksReplaysAndVerifiesOnEveryNode(t *testing.T) {
	fake := clienttest.NewCluster(3)
	defer fake.Close()
	c := newClient(t, fake.Addrs())
	ctx := context.Background()

	var progress bytes.Buffer
	report, err := Stocks(ctx, c, writeSmallFile(t), StocksOptions{
		Concurrency: 2,
		Progress:    &progress,
	})
	require.NoError(t, err)

	assert.Equal(t, 8, report.Quotes)
	assert.Equal(t, 8, report.Written)
	assert.Zero(t, report.Errors)
	assert.Equal(t, uint64(8), report.Expected.MinIndex)
	assert.Equal(t, map[string]string{"TSLA": "574", "AAPL": "116.03", "MSFT": "213.87"},
		report.Expected.Prices)
	assert.Contains(t, report.String(), "replayed 8 quotes in ")
	assert.Contains(t, report.String(), ", 0 errors")
	assert.Contains(t, progress.String(), "8/8")
	for _, symbol := range []string{"TSLA", "AAPL", "MSFT"} {
		times := fake.Received(symbol)
		for i := 1; i < len(times); i++ {
			assert.True(t, times[i].After(times[i-1]), "%s written out of order", symbol)
		}
	}

	verified, err := Verify(ctx, c, report.Expected, fake.Addrs())
	require.NoError(t, err)
	require.NoError(t, verified.Err())
	assert.Len(t, verified.Results, 9)
	assert.Equal(t, []int{3, 3, 3}, fake.Reads(), "every symbol is read from every node")
	var out bytes.Buffer
	require.NoError(t, verified.Print(&out))
	assert.Contains(t, out.String(), "AAPL  116.03  ok on 3/3 nodes")
}

func TestVerifyReportsMismatchAndUnreadableNode(t *testing.T) {
	fake := clienttest.NewCluster(2)
	defer fake.Close()
	c := newClient(t, fake.Addrs())
	ctx := context.Background()
	_, err := Stocks(ctx, c, writeSmallFile(t), StocksOptions{})
	require.NoError(t, err)
	fake.SetPrice("TSLA", "555.38")
	fake.SetHook(func(node int, w http.ResponseWriter, r *http.Request) bool {
		if node == 1 && strings.HasSuffix(r.URL.Path, "/MSFT") {
			clienttest.WriteError(w, http.StatusBadRequest, "bad_request", "nope")
			return true
		}
		return false
	})

	// With no index given, Verify finds one with a strong read.
	verified, err := Verify(ctx, c, Expected{Prices: map[string]string{
		"TSLA": "574.0", "AAPL": "116.03", "MSFT": "213.87",
	}}, nil)
	require.NoError(t, err)

	assert.Equal(t, uint64(8), verified.MinIndex)
	err = verified.Err()
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrMismatch))
	assert.Contains(t, err.Error(), "3 of 6 reads")
	var out bytes.Buffer
	require.NoError(t, verified.Print(&out))
	assert.Contains(t, out.String(), "AAPL  116.03  ok on 2/2 nodes")
	assert.Contains(t, out.String(), "TSLA  574     MISMATCH on http://127.0.0.1:")
	assert.Contains(t, out.String(), ": has 555.38")
	assert.Contains(t, out.String(), ": error: shoal: 400 bad_request")
	assert.Contains(t, out.String(), "written by hand", "a wrong price comes with its likely cause")
	t.Log("\n" + out.String())
}

func TestStocksCountsFailedWritesAndGoesOn(t *testing.T) {
	fake := clienttest.NewCluster(1)
	defer fake.Close()
	fake.SetHook(func(_ int, w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/MSFT") {
			clienttest.WriteError(w, http.StatusBadRequest, "bad_price", "no")
			return true
		}
		return false
	})
	c := newClient(t, fake.Addrs())

	report, err := Stocks(context.Background(), c, writeSmallFile(t), StocksOptions{})

	require.NoError(t, err)
	assert.Equal(t, 6, report.Written)
	assert.Equal(t, 2, report.Errors)
	require.Error(t, report.FirstError)
	assert.Contains(t, report.FirstError.Error(), "MSFT 2020-11-2")
}

func TestStocksMissingFile(t *testing.T) {
	c := newClient(t, []string{"127.0.0.1:1"})
	_, err := Stocks(context.Background(), c, t.TempDir()+"/missing.csv", StocksOptions{})
	assert.ErrorIs(t, err, os.ErrNotExist)
}
