# lme4::glmer on VerbAgg (crossed persons x items, binomial, Laplace), timed.
# Usage: Rscript glmer_verbagg.R [REPEATS]  -> prints one JSON line {"seconds": ..., ...}
# "seconds" is the median elapsed time of REPEATS (default 3) fits in this R process.
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[1]) else 3L
times <- numeric(reps)
for (i in seq_len(reps)) {
  times[i] <- system.time(
    m <- glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), data = VerbAgg,
               family = binomial))[["elapsed"]]
}
cat(sprintf('{"seconds": %.4f, "times": [%s], "loglik": %.10f, "lme4": "%s"}\n', median(times),
            paste(sprintf("%.4f", times), collapse = ", "), as.numeric(logLik(m)),
            as.character(packageVersion("lme4"))))
