// The demo's reporting side: the run's event log (JSONL), the SVG plotter, the HTML report, the
// terminal summary table and the progress display. The embedded RL loop writes events with
// RunLogWriter while it runs; everything else is computed from the log, so a killed run still reports.
export * from './events.js';
export { RunLogWriter, readRunLog, parseRunLog, encodeEvent, eventsOf, machineInfo, type RunLogContents, type RunLogWriterOptions } from './runLog.js';
export { ReportErrorCode, RunLogError } from './errors.js';
export { analyzeRun, computeTotals, poolEval, type RunAnalysis, type ScaffoldHeadline, type PhaseSpan, type RunStatus } from './analysis.js';
export {
  svgPlot, movingAverage, niceStep, ticksOf, formatTick, escapeXml, PALETTE, type PlotSeries, type PlotOptions, type ReferenceLine,
} from './svgPlot.js';
export { reportPlots, smoothingWindow, type ReportPlot } from './plots.js';
export { renderReport, writeReport, type RenderOptions, type WrittenReport } from './html.js';
export { summaryTable, progressLine, alignColumns, type ProgressState } from './summary.js';
export { trainerStepFields, type TrainerStepFields } from './stepFields.js';
export { createProgress, type Progress, type ProgressOptions, type ProgressStream } from './progress.js';
