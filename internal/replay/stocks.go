// Package replay writes real recorded data into a running shoal cluster
// through the Go client and checks that every node ends up with the state
// the data implies. Each kind of data has its own file: stocks here, text
// editing traces and comment threads next to it.
//
// The functions take a *client.Client and plain paths and return reports,
// so that both `shoal replay` and the integration tests of the cluster
// package can call them.
package replay

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/apd/v3"
	"golang.org/x/sync/errgroup"

	"github.com/shoal-db/shoal/client"
	"github.com/shoal-db/shoal/fsm/stocks"
)

// StockQuote is one row of the daily stock file: the close of one symbol
// on one day.
type StockQuote struct {
	// Symbol is the ticker from the Name column.
	Symbol string
	// Date is the trading day at 00:00 UTC.
	Date time.Time
	// Close is the closing price as the file spells it, rounded half to
	// even to stocks.MaxDecimals places: some rows carry binary
	// floating-point noise such as 31.910999999999998, which the server
	// rightly rejects as too precise.
	Close string
}

// ReadStocks parses the daily stock CSV (columns date, open, high, low,
// close, adjusted_close, volume, dividend_amount, split_coefficient, Name,
// found by name in the header) and returns its quotes oldest first. Rows
// of one date keep their order in the file, and so does every symbol's
// sequence of quotes, which the file lists newest first.
func ReadStocks(r io.Reader) ([]StockQuote, error) {
	reader := csv.NewReader(r)
	reader.ReuseRecord = true

	// Find the columns by name.
	header, err := reader.Read()
	if err != nil {
		return nil, fmt.Errorf("replay: read stock header: %w", err)
	}
	dateCol, closeCol, nameCol := -1, -1, -1
	for i, name := range header {
		switch strings.TrimSpace(name) {
		case "date":
			dateCol = i
		case "close":
			closeCol = i
		case "Name":
			nameCol = i
		}
	}
	if dateCol < 0 || closeCol < 0 || nameCol < 0 {
		return nil, fmt.Errorf("replay: stock header %q lacks date, close or Name", header)
	}

	var quotes []StockQuote
	for {
		record, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("replay: read stocks: %w", err)
		}

		line, _ := reader.FieldPos(0)
		date, err := time.Parse(time.DateOnly, strings.TrimSpace(record[dateCol]))
		if err != nil {
			return nil, fmt.Errorf("replay: stocks line %d: bad date: %w", line, err)
		}
		closePrice, err := roundPrice(strings.TrimSpace(record[closeCol]))
		if err != nil {
			return nil, fmt.Errorf("replay: stocks line %d: bad close: %w", line, err)
		}
		q := StockQuote{
			Symbol: strings.TrimSpace(record[nameCol]),
			Date:   date,
			Close:  closePrice,
		}
		if q.Symbol == "" || q.Close == "" {
			return nil, fmt.Errorf("replay: stocks line %d: empty symbol or close", line)
		}
		quotes = append(quotes, q)
	}

	slices.SortStableFunc(quotes, func(a, b StockQuote) int {
		return a.Date.Compare(b.Date)
	})
	return quotes, nil
}

// roundPrice rounds a decimal to stocks.MaxDecimals places, exactly.
func roundPrice(s string) (string, error) {
	d, _, err := apd.NewFromString(s)
	if err != nil {
		return "", err
	}
	ctx := apd.BaseContext.WithPrecision(40)
	ctx.Rounding = apd.RoundHalfEven
	if _, err := ctx.Quantize(d, d, -stocks.MaxDecimals); err != nil {
		return "", err
	}
	return CanonicalDecimal(d.Text('f')), nil
}

// LoadStocks reads the stock file at path with ReadStocks.
func LoadStocks(path string) ([]StockQuote, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	return ReadStocks(f)
}

// LastCloses returns each symbol's close of the last quote in quotes, in
// canonical form: the price every node must hold once quotes (oldest
// first) have been replayed.
func LastCloses(quotes []StockQuote) map[string]string {
	last := make(map[string]string)
	for _, q := range quotes {
		last[q.Symbol] = CanonicalDecimal(q.Close)
	}
	return last
}

// CanonicalDecimal writes a decimal the way the server stores prices:
// without leading zeros in the integer part, trailing zeros in the
// fraction or a trailing dot ("574.0" is "574", "0116.030" is "116.03").
// It compares exact decimal text and never goes through a float.
func CanonicalDecimal(s string) string {
	s = strings.TrimSpace(s)
	whole, frac, _ := strings.Cut(s, ".")
	whole = strings.TrimLeft(whole, "0")
	if whole == "" {
		whole = "0"
	}
	frac = strings.TrimRight(frac, "0")
	if frac == "" {
		return whole
	}
	return whole + "." + frac
}

// DefaultStocksConcurrency is the number of writers when
// StocksOptions.Concurrency is zero.
const DefaultStocksConcurrency = 16

// StocksOptions adjusts Stocks. The zero value is ready to use.
type StocksOptions struct {
	// Concurrency is the number of concurrent writers; zero means
	// DefaultStocksConcurrency. The writes of one symbol are sent one after
	// another in date order, so more writers than symbols do not help.
	Concurrency int
	// Progress receives the progress (see progress); nil means none.
	Progress io.Writer
}

// StocksReport is the outcome of Stocks.
type StocksReport struct {
	// Quotes is the number of quotes in the file.
	Quotes int
	// Written is the number of writes the cluster acknowledged.
	Written int
	// Errors is the number of writes that failed after the client's
	// retries; FirstError is the first of them.
	Errors     int
	FirstError error
	// Elapsed is the time from the first write to the last reply.
	Elapsed time.Duration
	// Expected holds each symbol's last close and the highest Raft index
	// of any acknowledged write, which is what Verify needs.
	Expected Expected
}

// Rate returns acknowledged writes per second.
func (r StocksReport) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Written) / r.Elapsed.Seconds()
}

// String returns the closing line of a replay, such as
// "replayed 38268 quotes in 4.1s (9300/s), 0 errors".
func (r StocksReport) String() string {
	return fmt.Sprintf("replayed %d quotes in %.1fs (%.0f/s), %d errors",
		r.Written, r.Elapsed.Seconds(), r.Rate(), r.Errors)
}

// Stocks replays the daily stock file at path into the cluster behind c,
// oldest quote first, with price = close and time = the date at 00:00 UTC.
// The client's node selection spreads the writes over all nodes.
//
// Symbols are split over the writers, and each writer sends its symbols'
// quotes one at a time in date order, so the writes of one symbol reach
// the cluster in order (the server keeps the latest quote by time anyway).
// A write that fails after the client's retries is counted and the replay
// goes on. The error is non-nil only when the file cannot be read or ctx
// ends; the report is filled in as far as the replay got in either case.
func Stocks(
	ctx context.Context, c *client.Client, path string, opts StocksOptions,
) (StocksReport, error) {
	quotes, err := LoadStocks(path)
	if err != nil {
		return StocksReport{}, err
	}
	report := StocksReport{
		Quotes:   len(quotes),
		Expected: Expected{Prices: LastCloses(quotes)},
	}
	if len(quotes) == 0 {
		return report, nil
	}

	workers := cmp.Or(opts.Concurrency, DefaultStocksConcurrency)
	queues := partitionBySymbol(quotes, workers)
	bar := newProgress(opts.Progress, len(quotes), "stocks", "quotes")

	// Run the writers; each counts into the shared tallies.
	var (
		written, failed atomic.Int64
		maxIndex        atomic.Uint64
		firstErr        error
		firstErrOnce    sync.Once
	)
	start := time.Now()
	group, groupCtx := errgroup.WithContext(ctx)
	for _, queue := range queues {
		group.Go(func() error {
			for _, q := range queue {
				if err := groupCtx.Err(); err != nil {
					return err
				}

				reply, err := c.PutStock(groupCtx, q.Symbol, q.Close, q.Date)
				if err != nil {
					if groupCtx.Err() != nil {
						return groupCtx.Err()
					}
					failed.Add(1)
					firstErrOnce.Do(func() {
						firstErr = fmt.Errorf("%s %s: %w",
							q.Symbol, q.Date.Format(time.DateOnly), err)
					})
				} else {
					written.Add(1)
					storeMax(&maxIndex, reply.Index)
				}
				bar.add(1)
			}
			return nil
		})
	}
	err = group.Wait()

	// Close the progress and fill in the report.
	bar.finish(err)
	report.Elapsed = time.Since(start)
	report.Written = int(written.Load())
	report.Errors = int(failed.Load())
	report.FirstError = firstErr
	report.Expected.MinIndex = maxIndex.Load()
	if err != nil {
		return report, fmt.Errorf("replay: stocks stopped after %d of %d quotes: %w",
			report.Written+report.Errors, report.Quotes, err)
	}
	return report, nil
}

// partitionBySymbol splits quotes (oldest first) into at most workers
// queues. Symbols are dealt out in order of first appearance, and every
// queue keeps the order of quotes, so each symbol's quotes stay in one
// queue in date order.
func partitionBySymbol(quotes []StockQuote, workers int) [][]StockQuote {
	workers = max(workers, 1)
	queueOf := make(map[string]int)
	var queues [][]StockQuote
	for _, q := range quotes {
		i, ok := queueOf[q.Symbol]
		if !ok {
			i = len(queueOf) % workers
			queueOf[q.Symbol] = i
			if i == len(queues) {
				queues = append(queues, nil)
			}
		}
		queues[i] = append(queues[i], q)
	}
	return queues
}

// storeMax raises v to n if n is larger.
func storeMax(v *atomic.Uint64, n uint64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}
