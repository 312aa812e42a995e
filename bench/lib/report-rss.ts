// Preloaded with `node --import` into a process under measurement: reports its peak RSS on exit.
process.on('exit', () => {
  process.stderr.write(`\nbench-max-rss-kib ${process.resourceUsage().maxRSS}\n`);
});
