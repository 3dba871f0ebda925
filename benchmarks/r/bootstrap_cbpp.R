# lme4's parametric bootstrap of the cbpp binomial GLMM, timed.
# Usage: Rscript bootstrap_cbpp.R NSIM   -> prints one JSON line {"seconds": ..., ...}
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
nsim <- if (length(args)) as.integer(args[1]) else 200L
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial)
fun <- function(x) c(getME(x, "theta"), fixef(x))
t <- system.time(b <- suppressWarnings(suppressMessages(bootMer(m, FUN = fun, nsim = nsim, seed = 1))))
cat(sprintf('{"seconds": %.4f, "nsim": %d, "failed": %d, "lme4": "%s"}\n', t[["elapsed"]], nsim,
            sum(!complete.cases(b$t)), as.character(packageVersion("lme4"))))
