/**
 * sim/report/ — what a simulator run leaves behind for a person:
 * `writeReport(dir, report)` writes report.json, report.md and SVG plots
 * rendered with Vega-Lite (headless, no browser). Scenarios feed the plots by
 * recording `series` with a `SeriesRecorder` (bounded: at most 2,000 points
 * per series). docs/simulator-reports.md explains the plots and the choice of
 * charting library.
 */
export { writeReport, type WriteReportOptions, type WrittenReport } from './write.ts'
export { renderMarkdown, type MarkdownOptions, type PlotOutcome } from './markdown.ts'
export { PLOTS, renderSvg, campaignFiguresSpec, type PlotDefinition, type CampaignFigurePoint } from './plots.ts'
export * from './series.ts'
export * from './targets.ts'
export * from './types.ts'
