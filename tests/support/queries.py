"""The dashboard's queries, as tests send them."""

COHORT_DETAIL = """
query Detail($id: Int!) {
  cohort(id: $id) {
    id name mode status startDate endDate computedAt stale
    track { id name } program { id name status }
    seats { total used available paid scholarship sponsored utilization }
    enrollment { enrolled active completed withdrawn deferred completionRate
                 bySeatType { paid scholarship sponsored } }
    mentorship { mentorCount activeLearners coveredLearners mentorCoverage learnersPerMentor
                 pastSessions completedPastSessions sessionCompletionRate upcomingSessions
                 mentors { id name maxLearners activeLearners completedSessions noShowSessions } }
    readiness { average scoredLearners ready distribution { lower upper count } }
    competencies { competency learners levels averageLevel }
    missionFunnel { started submitted approved rejected approvalRate medianReviewHours
                    missions { missionId title dueDate started submitted approved rejected
                               approvalRate medianReviewHours } }
    portfolio { draft submitted published learnersWithPublished publishedRate averageQuality }
    payments { currency billedCents paidCents pendingCents failedCents overdueCents
               refundedCents refundCount failedCount collectionRate }
    milestones { upcoming { id title dueDate } overdue { id title dueDate } }
    alerts { code severity cohortId value threshold message }
    flags
  }
}
"""


SUMMARY = """
query Summary {
  me {
    id name email
    summary {
      totalCohorts activeCohorts activePrograms
      seats { total used available paid scholarship sponsored utilization }
      averageReadiness completionRate mentorCoverage sessionCompletionRate
      alertCounts { critical warning }
      alertsByCode { code count }
      alerts { code severity cohortId }
      computedAt stale
    }
  }
}
"""
