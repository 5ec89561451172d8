/// How often a subscription bills. Raw values mirror the wire enum.
public enum BillingInterval: Int32, Sendable, Hashable, CaseIterable {
    case monthly = 1
    case annual = 2
}

/// The billing anchor and the period boundaries it fixes (T2, T3).
///
/// Every boundary is computed from the anchor, never from the previous boundary, so a
/// short month never shifts later boundaries: the boundary in month `m` of year `y` is
/// `(y, m, min(anchorDay, daysIn(y, m)))`; annual plans use only the anchor month.
public struct BillingSchedule: Sendable, Hashable {
    public let interval: BillingInterval
    /// 1–12 for annual plans, 0 for monthly plans.
    public let anchorMonth: Int8
    /// 1–31.
    public let anchorDay: Int8

    public init(interval: BillingInterval, anchorMonth: Int, anchorDay: Int) {
        self.interval = interval
        self.anchorMonth = interval == .annual ? Int8(anchorMonth) : 0
        self.anchorDay = Int8(anchorDay)
    }

    /// The schedule anchored on a start date (O2).
    public init(interval: BillingInterval, startDate: CivilDate) {
        let (_, month, day) = startDate.components
        self.init(interval: interval, anchorMonth: month, anchorDay: day)
    }

    /// Boundaries are numbered: months since year 0 (monthly) or years (annual).
    func boundary(_ index: Int) -> CivilDate {
        let year: Int
        let month: Int
        switch interval {
        case .monthly:
            year = floorDivide(index, 12)
            month = index - year * 12 + 1
        case .annual:
            year = index
            month = Int(anchorMonth)
        }
        let day = min(Int(anchorDay), CivilDate.daysInMonth(year: year, month: month))
        return CivilDate(epochDay: Int32(CivilDate.epochDay(year: year, month: month, day: day)))
    }

    /// The index of the boundary that falls in the month (or year) of `date`.
    func boundaryIndex(around date: CivilDate) -> Int {
        let (year, month, _) = date.components
        switch interval {
        case .monthly: return year * 12 + month - 1
        case .annual: return year
        }
    }

    /// The first billing date on or after `date` (L5 "B").
    public func billingDate(onOrAfter date: CivilDate) -> CivilDate {
        let index = boundaryIndex(around: date)
        let here = boundary(index)
        return here >= date ? here : boundary(index + 1)
    }

    /// The first billing date strictly after `date`.
    public func billingDate(after date: CivilDate) -> CivilDate {
        let index = boundaryIndex(around: date)
        let here = boundary(index)
        return here > date ? here : boundary(index + 1)
    }

    /// The period `[start, end)` that contains `date`.
    public func period(containing date: CivilDate) -> (start: CivilDate, end: CivilDate) {
        let index = boundaryIndex(around: date)
        let here = boundary(index)
        if here <= date { return (here, boundary(index + 1)) }
        return (boundary(index - 1), here)
    }
}
