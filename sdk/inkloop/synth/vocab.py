"""The words of generated contracts, per language: titles, clauses, the labels of signing blocks.

The signing labels are ones the verdict stage's rules (:mod:`inkloop.verdict.rules`) recognise, so
a generated document's places are found by ``inkloop verdict`` as a real one's would be.
"""

from __future__ import annotations

LANGUAGES = ("en", "de", "fr", "es", "pt")

TITLES: dict[str, tuple[str, ...]] = {
    "en": (
        "SERVICE AGREEMENT",
        "Employment Contract",
        "NON-DISCLOSURE AGREEMENT",
        "Lease Agreement",
        "Purchase Order",
    ),
    "de": (
        "DIENSTLEISTUNGSVERTRAG",
        "Arbeitsvertrag",
        "Geheimhaltungsvereinbarung",
        "Mietvertrag",
        "Bestellung",
    ),
    "fr": (
        "CONTRAT DE PRESTATION",
        "Contrat de travail",
        "Accord de confidentialité",
        "Bail d'habitation",
        "Bon de commande",
    ),
    "es": (
        "CONTRATO DE SERVICIOS",
        "Contrato de trabajo",
        "Acuerdo de confidencialidad",
        "Contrato de arrendamiento",
        "Orden de compra",
    ),
    "pt": (
        "CONTRATO DE PRESTAÇÃO DE SERVIÇOS",
        "Contrato de trabalho",
        "Acordo de confidencialidade",
        "Contrato de arrendamento",
        "Nota de encomenda",
    ),
}

CLAUSES: dict[str, tuple[str, ...]] = {
    "en": (
        "The Provider shall deliver the services described in Annex A with due care and skill.",
        "The Client shall pay each invoice within thirty (30) days of its date, without deduction.",
        "This Agreement enters into force on the date of the last signature and runs for twelve months.",
        "Either party may terminate this Agreement by written notice of sixty days to the other party.",
        "Each party shall keep confidential information received from the other party.",
        "Neither party is liable for delays caused by events beyond its reasonable control.",
        "This Agreement is governed by the laws of the place where the Provider has its registered office.",
        "Amendments to this Agreement are valid only if made in writing and signed by both parties.",
        "The Employee shall work forty hours per week at the premises of the Employer or remotely.",
        "The Tenant shall pay the monthly rent in advance on the first working day of each month.",
    ),
    "de": (
        "Der Anbieter erbringt die in Anlage A beschriebenen Leistungen mit der gebotenen Sorgfalt.",
        "Der Kunde zahlt jede Rechnung innerhalb von dreißig (30) Tagen ab Rechnungsdatum ohne Abzug.",
        "Dieser Vertrag tritt mit der letzten Unterschrift in Kraft und läuft zwölf Monate.",
        "Jede Partei kann diesen Vertrag mit einer Frist von sechzig Tagen schriftlich kündigen.",
        "Die Parteien behandeln alle im Rahmen dieses Vertrags erhaltenen Informationen vertraulich.",
        "Keine Partei haftet für Verzögerungen durch Ereignisse außerhalb ihres Einflussbereichs.",
        "Es gilt das Recht am Sitz des Anbieters. Gerichtsstand ist der Sitz des Anbieters.",
        "Änderungen dieses Vertrags bedürfen der Schriftform und der Unterschrift beider Parteien.",
        "Der Arbeitnehmer arbeitet vierzig Stunden pro Woche in den Räumen des Arbeitgebers oder mobil.",
        "Der Mieter zahlt die Monatsmiete im Voraus am ersten Werktag eines jeden Monats.",
    ),
    "fr": (
        "Le Prestataire fournit les services décrits en annexe A avec diligence et compétence.",
        "Le Client paie chaque facture dans un délai de trente (30) jours à compter de sa date.",
        "Le présent contrat entre en vigueur à la dernière signature pour douze mois.",
        "Chaque partie peut résilier le présent contrat par écrit avec un préavis de soixante jours.",
        "Les parties gardent confidentielles les informations reçues au titre du présent contrat.",
        "Aucune partie n'est responsable des retards dus à des événements hors de son contrôle.",
        "Le présent contrat est soumis au droit du lieu du siège social du Prestataire.",
        "Toute modification du présent contrat doit être faite par écrit et signée par les deux parties.",
        "Le salarié travaille trente-cinq heures par semaine dans les locaux de l'employeur.",
        "Le locataire paie le loyer mensuel d'avance le premier jour ouvré de chaque mois.",
    ),
    "es": (
        "El Proveedor prestará los servicios descritos en el anexo A con la debida diligencia.",
        "El Cliente pagará cada factura en un plazo de treinta (30) días desde su fecha.",
        "El presente contrato entra en vigor en la fecha de la última firma y dura doce meses.",
        "Cualquiera de las partes podrá resolver el contrato con un preaviso escrito de sesenta días.",
        "Las partes mantendrán la confidencialidad de la información recibida en virtud del contrato.",
        "Ninguna de las partes será responsable de los retrasos debidos a causas ajenas a su control.",
        "El presente contrato se rige por la ley del lugar del domicilio social del Proveedor.",
        "Las modificaciones del contrato solo son válidas por escrito y con la firma de ambas partes.",
        "El trabajador prestará servicios cuarenta horas semanales en las oficinas de la empresa.",
        "El arrendatario pagará la renta mensual por adelantado el primer día hábil de cada mes.",
    ),
    "pt": (
        "O Prestador presta os serviços descritos no anexo A com a diligência devida.",
        "O Cliente paga cada fatura no prazo de trinta (30) dias a contar da sua data.",
        "O presente contrato entra em vigor na data da última assinatura e vigora por doze meses.",
        "Qualquer das partes pode denunciar o contrato por escrito com um pré-aviso de sessenta dias.",
        "As partes mantêm confidenciais as informações recebidas ao abrigo do presente contrato.",
        "Nenhuma das partes é responsável por atrasos devidos a factos fora do seu controlo.",
        "O presente contrato rege-se pela lei do lugar da sede do Prestador.",
        "As alterações ao contrato só são válidas por escrito e com a assinatura de ambas as partes.",
        "O trabalhador presta quarenta horas semanais nas instalações da entidade empregadora.",
        "O arrendatário paga a renda mensal adiantada no primeiro dia útil de cada mês.",
    ),
}

#: Signing labels (the verdict's rules find each), the printed-name and date labels, initials.
SIGN_LABELS: dict[str, tuple[str, ...]] = {
    "en": ("Signature:", "Signed by:", "Authorized signatory", "Signature of the Client", "Sign here:"),
    "de": ("Unterschrift:", "Unterzeichnet von:", "Unterschrift des Kunden", "Unterschrift Arbeitgeber"),
    "fr": ("Signature :", "Signé par :", "Signature du Client", "Lu et approuvé, signature :"),
    "es": ("Firma:", "Firmado por:", "Firma del Cliente", "Firma del arrendatario"),
    "pt": ("Assinatura:", "Assinado por:", "Assinatura do Cliente", "Assinatura do arrendatário"),
}
NAME_LABEL = {"en": "Name:", "de": "Name:", "fr": "Nom :", "es": "Nombre:", "pt": "Nome:"}
DATE_LABEL = {"en": "Date:", "de": "Datum:", "fr": "Date :", "es": "Fecha:", "pt": "Data:"}
PLACE_LABEL = {"en": "Place:", "de": "Ort:", "fr": "Lieu :", "es": "Lugar:", "pt": "Local:"}
INITIALS_LABEL = {"en": "Initials", "de": "Paraphe", "fr": "Paraphe", "es": "Iniciales", "pt": "Rubrica"}
PARTIES: dict[str, tuple[str, str]] = {
    "en": ("The Client", "The Provider"),
    "de": ("Der Kunde", "Der Anbieter"),
    "fr": ("Le Client", "Le Prestataire"),
    "es": ("El Cliente", "El Proveedor"),
    "pt": ("O Cliente", "O Prestador"),
}
ARTICLE: dict[str, tuple[str, ...]] = {
    "en": ("Article", "Section", "Clause"),
    "de": ("§", "Artikel"),
    "fr": ("Article",),
    "es": ("Cláusula", "Artículo"),
    "pt": ("Cláusula", "Artigo"),
}
PAGE_WORD = {"en": "Page", "de": "Seite", "fr": "Page", "es": "Página", "pt": "Página"}

FIRST_NAMES = (
    "Anna",
    "Lukas",
    "Marie",
    "João",
    "Sofía",
    "Pierre",
    "Emily",
    "Jonas",
    "Lucía",
    "Tiago",
    "Claire",
    "Daniel",
    "Inês",
    "Hannah",
    "Mateo",
    "Chloé",
    "Oliver",
    "Beatriz",
    "Felix",
    "Elena",
)
LAST_NAMES = (
    "Schneider",
    "Martin",
    "Silva",
    "García",
    "Dubois",
    "Johnson",
    "Weber",
    "Fernández",
    "Costa",
    "Lefebvre",
    "Brown",
    "Fischer",
    "Moreau",
    "Pereira",
    "López",
    "Taylor",
    "Becker",
    "Santos",
)
COMPANIES = (
    "Northwind Consulting Ltd",
    "Blauberg Technik GmbH",
    "Atelier Lumière SARL",
    "Soluciones Iberia S.L.",
    "Atlântico Serviços Lda",
    "Greenfield Logistics Inc.",
    "Rheinwerk Software AG",
    "Cabinet Laurent & Associés",
)
STAMP_WORDS = (
    "APPROVED",
    "RECEIVED",
    "COPY",
    "PAID",
    "ORIGINAL",
    "CONFIDENTIAL",
    "EINGANG",
    "REÇU",
    "RECIBIDO",
)
